{#- Where the raw lines are declared: `<target schema>_raw.trip_lines`. -#}
{% macro raw_source_relation() -%}
    {{ return(api.Relation.create(
        database=target.database,
        schema=target.schema ~ '_raw',
        identifier='trip_lines',
    )) }}
{%- endmacro %}

{#- on-run-start: declare the raw source over `raw_path` so every raw line is read whole, as
    text, with the file it came from. Splitting happens in staging, in SQL, so a line with the
    wrong number of fields is quarantined instead of padded or truncated by the reader. -#}
{% macro declare_raw_source() -%}
    {{ return(adapter.dispatch('declare_raw_source', 'dc_taxi')()) }}
{%- endmacro %}

{% macro duckdb__declare_raw_source() -%}
    {%- set raw_path = var('raw_path') | string -%}
    {%- set raw_glob = raw_path.rstrip('/') ~ '/taxi_*.txt' -%}
    {%- set relation = raw_source_relation() -%}
    {%- if execute -%}
        {%- set found = run_query("select count(*) from glob('" ~ raw_glob ~ "')") -%}
        {%- if found.columns[0].values()[0] == 0 -%}
            {{ exceptions.raise_compiler_error(
                "no raw files matching '" ~ raw_glob ~ "' — generate sample data with "
                ~ "`python -m scripts.generate_raw --out " ~ raw_path ~ "` or point the "
                ~ "raw_path var at the DC taxi files (--vars '{raw_path: <folder>}')"
            ) }}
        {%- endif -%}
    {%- endif -%}
    create schema if not exists {{ relation.include(identifier=false) }};
    create or replace view {{ relation }} as
    select
        parse_filename(filename) as source_file,
        line as raw_line
    from read_csv(
        '{{ raw_glob }}',
        columns = {'line': 'VARCHAR'},
        delim = chr(0),
        quote = '',
        escape = '',
        header = false,
        auto_detect = false,
        filename = true
    )
{%- endmacro %}
