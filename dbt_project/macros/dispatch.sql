{#- The `default__` of every dispatched macro: the project's SQL is written for DuckDB and
    Athena only, so another adapter fails at compile time instead of getting Trino SQL. -#}
{% macro adapter_not_implemented(macro_name) -%}
    {{ exceptions.raise_compiler_error(
        macro_name ~ " is not implemented for adapter '" ~ adapter.type() ~ "' (duckdb, athena)"
    ) }}
{%- endmacro %}
