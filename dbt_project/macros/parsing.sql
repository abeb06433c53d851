{#- A plain decimal number: optional sign, digits with an optional fraction, optional exponent.
    Checked before casting so `NaN`, `inf`, `0x1A` or `1,5` never count as numbers. -#}
{% macro number_pattern() -%}
    {{ return('[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?') }}
{%- endmacro %}

{#- The only accepted timestamp layout: MM/DD/YYYY HH:MM. -#}
{% macro timestamp_pattern() -%}
    {{ return('[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}') }}
{%- endmacro %}

{#- True when the whole string matches the pattern. -#}
{% macro matches_pattern(expr, pattern) -%}
    {{ return(adapter.dispatch('matches_pattern', 'dc_taxi')(expr, pattern)) }}
{%- endmacro %}

{% macro default__matches_pattern(expr, pattern) -%}
    {{ adapter_not_implemented('matches_pattern') }}
{%- endmacro %}

{#- Trino (Java regex): `$` also matches before a final `\r`, so anchor on `\z`, the very end. -#}
{% macro athena__matches_pattern(expr, pattern) -%}
    regexp_like({{ expr }}, '^(?:{{ pattern }})\z')
{%- endmacro %}

{% macro duckdb__matches_pattern(expr, pattern) -%}
    regexp_full_match({{ expr }}, '{{ pattern }}')
{%- endmacro %}

{#- Leading and trailing spaces removed, and only spaces: the contract's "values are trimmed
    when parsed" (docs/design.md; the test oracle: `strip(" ")`). One-argument trim() strips
    tabs and Unicode spaces too, on both engines, so it is not used. -#}
{% macro trim_spaces(expr) -%}
    {{ return(adapter.dispatch('trim_spaces', 'dc_taxi')(expr)) }}
{%- endmacro %}

{% macro default__trim_spaces(expr) -%}
    {{ adapter_not_implemented('trim_spaces') }}
{%- endmacro %}

{% macro athena__trim_spaces(expr) -%}
    trim(both ' ' from {{ expr }})
{%- endmacro %}

{% macro duckdb__trim_spaces(expr) -%}
    trim({{ expr }}, ' ')
{%- endmacro %}

{#- Trimmed text to double; NULL (never an error) when it is not a plain number. Both engines
    read `1e2`, `.5` and `12.` as doubles. -#}
{% macro try_cast_number(expr) -%}
    {{ return(adapter.dispatch('try_cast_number', 'dc_taxi')(expr)) }}
{%- endmacro %}

{% macro default__try_cast_number(expr) -%}
    {{ adapter_not_implemented('try_cast_number') }}
{%- endmacro %}

{% macro athena__try_cast_number(expr) -%}
    {%- set trimmed = trim_spaces(expr) -%}
    case
        when {{ matches_pattern(trimmed, number_pattern()) }}
            then try_cast({{ trimmed }} as double)
    end
{%- endmacro %}

{#- DuckDB's cast ignores surrounding whitespace (tabs too), so the pattern admits spaces only
    and no trimmed copy is made: about half the cost on the hot path of int_trips_validated. -#}
{% macro duckdb__try_cast_number(expr) -%}
    case
        when {{ matches_pattern(expr, ' *' ~ number_pattern() ~ ' *') }}
            then try_cast({{ expr }} as double)
    end
{%- endmacro %}

{#- Trimmed `MM/DD/YYYY HH:MM` text to a timestamp; NULL when missing or invalid. -#}
{% macro parse_trip_timestamp(expr) -%}
    {{ return(adapter.dispatch('parse_trip_timestamp', 'dc_taxi')(expr)) }}
{%- endmacro %}

{% macro default__parse_trip_timestamp(expr) -%}
    {{ adapter_not_implemented('parse_trip_timestamp') }}
{%- endmacro %}

{#- Trino: date_parse's `%i` is minutes; an impossible date (02/30) fails and try() makes it
    NULL. -#}
{% macro athena__parse_trip_timestamp(expr) -%}
    {%- set trimmed = trim_spaces(expr) -%}
    case
        when {{ matches_pattern(trimmed, timestamp_pattern()) }}
            then try(date_parse({{ trimmed }}, '%m/%d/%Y %H:%i'))
    end
{%- endmacro %}

{% macro duckdb__parse_trip_timestamp(expr) -%}
    {%- set trimmed = trim_spaces(expr) -%}
    case
        when {{ matches_pattern(trimmed, timestamp_pattern()) }}
            then try_strptime({{ trimmed }}, '%m/%d/%Y %H:%M')
    end
{%- endmacro %}

{#- ISO day of week: 1 = Monday .. 7 = Sunday. -#}
{% macro iso_day_of_week(ts) -%}
    {{ return(adapter.dispatch('iso_day_of_week', 'dc_taxi')(ts)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(ts) -%}
    {{ adapter_not_implemented('iso_day_of_week') }}
{%- endmacro %}

{% macro athena__iso_day_of_week(ts) -%}
    day_of_week({{ ts }})
{%- endmacro %}

{% macro duckdb__iso_day_of_week(ts) -%}
    isodow({{ ts }})
{%- endmacro %}
