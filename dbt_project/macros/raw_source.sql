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
    wrong number of fields is quarantined instead of padded or truncated by the reader.
    Its first act drops the previous build's raw source, so a build whose hook fails can never
    read old raw lines: dbt skips every node (`skip_nodes_if_on_run_start_fails`), and the
    staging model's guard `assert_raw_source_declared` stops it even without that flag. -#}
{% macro declare_raw_source() -%}
    {{ return(adapter.dispatch('declare_raw_source', 'dc_taxi')()) }}
{%- endmacro %}

{#- Staging's pre-hook: the raw source must be this build's, or nothing is built. -#}
{% macro assert_raw_source_declared() -%}
    {%- set relation = raw_source_relation() -%}
    {%- if execute and not adapter.get_relation(
        database=relation.database, schema=relation.schema, identifier=relation.identifier
    ) -%}
        {{ exceptions.raise_compiler_error(
            "the on-run-start hook did not declare the raw source " ~ relation
            ~ " — see its error above; nothing was built"
        ) }}
    {%- endif -%}
{%- endmacro %}

{#- The raw_path var as a DuckDB folder, without a trailing slash. DuckDB's file glob would
    read `*`, `?`, `[` or `\` in it as a pattern, so such a name is refused, not matched. -#}
{% macro duckdb_raw_folder() -%}
    {%- set raw_path = (var('raw_path') | string).strip().rstrip('/') -%}
    {%- if not raw_path or modules.re.search('[*?\\[\\\\]', raw_path) -%}
        {{ exceptions.raise_compiler_error(
            "the raw_path var must name a folder without `*`, `?`, `[` or `\\` (DuckDB reads "
            ~ "them as a file pattern), got '" ~ raw_path ~ "' — rename the folder or link to "
            ~ "it, and pass --vars '{raw_path: <folder>}'"
        ) }}
    {%- endif -%}
    {{ return(raw_path) }}
{%- endmacro %}

{% macro duckdb__declare_raw_source() -%}
    {%- set relation = raw_source_relation() -%}
    {#- Only where dbt runs the SQL this renders: the hooks of build, run, test, ... -#}
    {%- if execute and flags.WHICH not in ['compile', 'show', 'docs', 'list', 'parse',
        'run-operation'] -%}
        {%- do run_query('drop view if exists ' ~ relation) -%}
    {%- endif -%}
    {%- set raw_folder = duckdb_raw_folder() -%}
    {%- set raw_glob = raw_folder ~ '/taxi_*.txt' -%}
    {%- if execute -%}
        {%- set found = run_query('select count(*) from glob(' ~ sql_string(raw_glob) ~ ')') -%}
        {%- if found.columns[0].values()[0] == 0 -%}
            {{ exceptions.raise_compiler_error(
                "no raw files matching '" ~ raw_glob ~ "' — generate sample data with "
                ~ "`python -m scripts.generate_raw --out " ~ raw_folder ~ "` or point the "
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
        {{ sql_string(raw_glob) }},
        columns = {'line': 'VARCHAR'},
        delim = chr(0),
        quote = '',
        escape = '',
        header = false,
        auto_detect = false,
        filename = true
    )
{%- endmacro %}

{#- Athena: an external text table over the raw prefix reads each line whole into one string
    column (the last column takes the rest of the line, so no character can split it), and a
    view over it keeps only `taxi_*.txt` directly under the prefix and names each line's file
    from "$path", like DuckDB's parse_filename. Athena runs one statement per query, so the
    macro runs its DDL itself and renders no SQL: `dbt run-operation declare_raw_source`
    declares the source the same way the on-run-start hook does. -#}
{% macro athena__declare_raw_source() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set raw_prefix = athena_raw_prefix() -%}
    {%- do assert_outputs_clear_of_raw(raw_prefix) -%}
    {%- do assert_output_locations_quotable() -%}
    {%- if var('table_type') not in ['hive', 'iceberg'] -%}
        {{ exceptions.raise_compiler_error(
            "the table_type var must be 'hive' or 'iceberg', got '" ~ var('table_type') ~ "'"
        ) }}
    {%- endif -%}
    {#- `dbt compile` renders hooks without running them: check the settings, touch nothing. -#}
    {%- if flags.WHICH in ['compile', 'show', 'docs', 'list', 'parse'] -%}
        {{ return('') }}
    {%- endif -%}
    {%- set relation = raw_source_relation() -%}
    {%- set lines = relation.incorporate(path={'identifier': relation.identifier ~ '_text'}) -%}
    {%- do run_query(athena_create_raw_schema(relation)) -%}
    {#- First the previous build's source goes: if anything below fails, staging finds none. -#}
    {%- do run_query('drop view if exists ' ~ relation) -%}
    {#- SQL DROP of an external Hive table never deletes its files. Never use dbt's
        drop_relation here: on Athena it also deletes the table's S3 data. -#}
    {%- do run_query('drop table if exists ' ~ lines.render_hive()) -%}
    {%- do run_query(athena_create_raw_lines_table(lines, raw_prefix)) -%}
    {%- do run_query(athena_create_raw_source_view(relation, lines, raw_prefix)) -%}
    {%- set first_line = run_query('select source_file from ' ~ relation ~ ' limit 1') -%}
    {%- if first_line.rows | length == 0 -%}
        {%- do run_query('drop view if exists ' ~ relation) -%}
        {{ exceptions.raise_compiler_error(
            "no raw files matching '" ~ raw_prefix ~ "/taxi_*.txt' — upload them with "
            ~ "`python -m scripts.upload_raw --src data/raw --dest " ~ raw_prefix ~ "` or "
            ~ "point the raw_path var at the S3 prefix holding the DC taxi files"
        ) }}
    {%- endif -%}
{%- endmacro %}
