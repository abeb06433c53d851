{#- Accurate/uniform: every non-null value lies in [min_value, max_value]. -#}
{% test values_between(model, column_name, min_value, max_value) %}
    {{ config(meta={'vacuum_principle': 'accurate'}) }}

select {{ column_name }} as offending_value
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}

{% endtest %}
