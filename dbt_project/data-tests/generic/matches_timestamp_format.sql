{#- Uniform: every present timestamp text uses the one contract layout, MM/DD/YYYY HH:MM. -#}
{% test matches_timestamp_format(model, column_name) %}
    {{ config(meta={'vacuum_principle': 'uniform'}) }}

select {{ column_name }} as offending_value
from {{ model }}
where
    {{ trim_spaces(column_name) }} not in ('', 'NULL')
    and not {{ matches_pattern(trim_spaces(column_name), timestamp_pattern()) }}

{% endtest %}
