{#- Every dbt var that reaches SQL goes through one of these, so a typo or a crafted value stops
    the build with a one-line error naming the var instead of becoming SQL. -#}

{#- A numeric var as a float: a plain decimal number (`3.25`, `-77.1`, `1e-2`), nothing else. -#}
{% macro number_var(name) -%}
    {%- set text = var(name) | string | trim -%}
    {%- if not modules.re.fullmatch(number_pattern(), text) -%}
        {{ exceptions.raise_compiler_error(
            "the " ~ name ~ " var must be a plain number such as 0.075 or -77.1, got '" ~ text
            ~ "' — fix it in --vars or dbt_project.yml"
        ) }}
    {%- endif -%}
    {{- return(text | float) -}}
{%- endmacro %}

{#- A date var as `YYYY-MM-DD` text, checked to be a real calendar date. -#}
{% macro date_var(name) -%}
    {%- set text = var(name) | string | trim -%}
    {%- set parts = modules.re.fullmatch('([0-9]{4})-([0-9]{2})-([0-9]{2})', text) -%}
    {%- set year, month, day = (parts.groups() | map('int') | list) if parts else (0, 0, 0) -%}
    {%- set leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) -%}
    {%- set month_days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] -%}
    {%- if not (1 <= month <= 12 and 1 <= day <= month_days[month - 1]) -%}
        {{ exceptions.raise_compiler_error(
            "the " ~ name ~ " var must be a date as YYYY-MM-DD such as 2015-01-01, got '" ~ text
            ~ "' — fix it in --vars or dbt_project.yml"
        ) }}
    {%- endif -%}
    {{- return(text) -}}
{%- endmacro %}
