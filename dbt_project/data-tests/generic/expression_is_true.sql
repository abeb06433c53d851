{#- Every row satisfies a boolean SQL expression. -#}
{% test expression_is_true(model, expression) %}
    {{ config(meta={'vacuum_principle': 'valid'}) }}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
