{#- Grain check: no two rows share the same values of `columns`. -#}
{% test unique_combination_of_columns(model, columns) %}
    {{ config(meta={'vacuum_principle': 'unified'}) }}

select
    {{ columns | join(', ') }},
    count(*) as row_count
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
