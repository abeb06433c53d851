{#- Lowercase hex md5 of a text expression (the trip_key). -#}
{% macro md5_hex(expr) -%}
    {{ return(adapter.dispatch('md5_hex', 'dc_taxi')(expr)) }}
{%- endmacro %}

{% macro default__md5_hex(expr) -%}
    {{ adapter_not_implemented('md5_hex') }}
{%- endmacro %}

{% macro athena__md5_hex(expr) -%}
    lower(to_hex(md5(to_utf8({{ expr }}))))
{%- endmacro %}

{% macro duckdb__md5_hex(expr) -%}
    md5({{ expr }})
{%- endmacro %}

{#- int(key[:15], 16) % 10000: 15 hex digits = 60 bits, so it fits a signed bigint everywhere. -#}
{% macro split_bucket(key) -%}
    {{ return(adapter.dispatch('split_bucket', 'dc_taxi')(key)) }}
{%- endmacro %}

{% macro default__split_bucket(key) -%}
    {{ adapter_not_implemented('split_bucket') }}
{%- endmacro %}

{% macro athena__split_bucket(key) -%}
    (from_base(substr({{ key }}, 1, 15), 16) % 10000)
{%- endmacro %}

{% macro duckdb__split_bucket(key) -%}
    (cast('0x' || substr({{ key }}, 1, 15) as bigint) % 10000)
{%- endmacro %}

{#- Each split's expected share of rows, from the fraction vars: train is the rest. -#}
{% macro split_fractions() -%}
    {%- set test_fraction = number_var('test_fraction') -%}
    {%- set validation_fraction = number_var('validation_fraction') -%}
    {{- return({
        'test': test_fraction,
        'validation': validation_fraction,
        'train': 1 - test_fraction - validation_fraction,
    }) -}}
{%- endmacro %}

{#- Bucket -> split name, from the test/validation fraction vars (docs/design.md). -#}
{% macro assign_split(bucket) -%}
    {%- set test_fraction = number_var('test_fraction') -%}
    {%- set test_upper = 10000 * test_fraction -%}
    {%- set validation_upper = 10000 * (test_fraction + number_var('validation_fraction')) -%}
    case
        when {{ bucket }} < {{ test_upper }} then 'test'
        when {{ bucket }} < {{ validation_upper }} then 'validation'
        else 'train'
    end
{%- endmacro %}
