{#- dbt's built-in generic tests, run exactly as dbt runs them (its own dispatched SQL), with
    the VACUUM principle each one checks as meta: the data-quality report reads it from the
    manifest, like every other test's. -#}
{% test not_null(model, column_name) %}
    {{ config(meta={'vacuum_principle': 'valid'}) }}
    {% set macro = adapter.dispatch('test_not_null', 'dbt') %}
    {{ macro(model, column_name) }}
{% endtest %}

{% test accepted_values(model, column_name, values, quote=True) %}
    {{ config(meta={'vacuum_principle': 'valid'}) }}
    {% set macro = adapter.dispatch('test_accepted_values', 'dbt') %}
    {{ macro(model, column_name, values, quote) }}
{% endtest %}

{% test unique(model, column_name) %}
    {{ config(meta={'vacuum_principle': 'unified'}) }}
    {% set macro = adapter.dispatch('test_unique', 'dbt') %}
    {{ macro(model, column_name) }}
{% endtest %}
