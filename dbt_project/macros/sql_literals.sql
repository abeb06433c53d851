{#- A value as a single-quoted SQL string literal, quotes doubled: the only way a var or a path
    may reach SQL text. Works for DuckDB and Athena/Trino (neither treats backslash as an
    escape in a standard string literal). -#}
{% macro sql_string(value) -%}
    {{- return("'" ~ (value | string).replace("'", "''") ~ "'") -}}
{%- endmacro %}

{#- Values as a SQL list of string literals: `['a', 'b']`. -#}
{% macro sql_list(values) -%}
    {%- set quoted = [] -%}
    {%- for value in values -%}
        {%- do quoted.append(sql_string(value)) -%}
    {%- endfor -%}
    {{- return('[' ~ quoted | join(', ') ~ ']') -}}
{%- endmacro %}
