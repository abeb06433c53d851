{#- Split a raw line on `|` with no quote or escape processing (LazySimpleSerDe semantics). -#}
{% macro split_line(line) -%}
    {{ return(adapter.dispatch('split_line', 'dc_taxi')(line)) }}
{%- endmacro %}

{% macro default__split_line(line) -%}
    {{ adapter_not_implemented('split_line') }}
{%- endmacro %}

{% macro athena__split_line(line) -%}
    split({{ line }}, '|')
{%- endmacro %}

{% macro duckdb__split_line(line) -%}
    string_split({{ line }}, '|')
{%- endmacro %}

{#- Number of elements of an array. -#}
{% macro array_length(arr) -%}
    {{ return(adapter.dispatch('array_length', 'dc_taxi')(arr)) }}
{%- endmacro %}

{% macro default__array_length(arr) -%}
    {{ adapter_not_implemented('array_length') }}
{%- endmacro %}

{% macro athena__array_length(arr) -%}
    cardinality({{ arr }})
{%- endmacro %}

{% macro duckdb__array_length(arr) -%}
    len({{ arr }})
{%- endmacro %}

{#- 1-based element of an array, NULL past its end. -#}
{% macro array_element(arr, position) -%}
    {{ return(adapter.dispatch('array_element', 'dc_taxi')(arr, position)) }}
{%- endmacro %}

{% macro default__array_element(arr, position) -%}
    {{ adapter_not_implemented('array_element') }}
{%- endmacro %}

{% macro athena__array_element(arr, position) -%}
    element_at({{ arr }}, {{ position }})
{%- endmacro %}

{% macro duckdb__array_element(arr, position) -%}
    {{ arr }}[{{ position }}]
{%- endmacro %}
