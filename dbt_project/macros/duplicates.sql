{#- Exact duplicate lines share a trip_key; the first copy (by file, then by line) is kept.
    `copies_of(trips, lines)` renders the body of a CTE: every column of the CTE `trips`, plus
    `is_later_copy`, true for every copy of a key but the first. `lines` is the staging
    relation those rows come from. -#}
{% macro copies_of(trips, lines) -%}
    {{ return(adapter.dispatch('copies_of', 'dc_taxi')(trips, lines)) }}
{%- endmacro %}

{% macro default__copies_of(trips, lines) -%}
    {{ adapter_not_implemented('copies_of') }}
{%- endmacro %}

{#- Athena: a window over every row; the engine spreads it over its workers. -#}
{% macro athena__copies_of(trips, lines) -%}
    select
        {{ trips }}.*,
        row_number() over (
            partition by {{ trips }}.trip_key
            order by {{ trips }}.source_file
        ) > 1 as is_later_copy
    from {{ trips }}
{%- endmacro %}

{#- DuckDB: no wide row is sorted. A second, narrow read of the lines (key, file and line
    number only) finds the keys on more than one line and the first line of each; the wide
    rows then stream past a join with that small set (about 1 % of the keys). A window over
    the wide rows sorted and spilled every line (benchmarks/RESULTS_full_scale.md). -#}
{% macro duckdb__copies_of(trips, lines) -%}
    select
        {{ trips }}.*,
        coalesce(
            repeated_keys.first_line
            != {'source_file': {{ trips }}.source_file, 'line_number': {{ trips }}.line_number},
            false
        ) as is_later_copy
    from {{ trips }}
    left join (
        select
            trip_key,
            min({'source_file': source_file, 'line_number': line_number}) as first_line
        from {{ lines }}
        group by trip_key
        having count(*) > 1
    ) as repeated_keys
        on {{ trips }}.trip_key = repeated_keys.trip_key
{%- endmacro %}
