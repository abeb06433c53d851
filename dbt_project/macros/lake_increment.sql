{#- Incremental builds (lakehouse/increment.py; README, "Full and incremental builds"). A mart
    whose rows come from raw lines keeps its lake files per raw file: it declares
    `meta: {lake_files_by: lake_source_file}` and selects `lake_source_file(...)`. On DuckDB
    that column names the folder of each row's file and is never stored in it: a build
    replaces the files of the raw files it re-reads and keeps every other published file. On
    Athena it is a stored column: an incremental build appends the new raw files' rows to a
    copy of the published table (macros/athena_lake.sql). -#}

{#- The folder column that keeps a mart's files per raw file (`<column>=taxi_2015_01.txt/`). -#}
{% macro lake_source_file_column() -%}
    {{- return('lake_source_file') -}}
{%- endmacro %}

{#- In a mart's select list: the raw file of the row, the key the lake keeps the mart's files
    by (a folder of the DuckDB lake, a column of Athena's tables). -#}
{% macro lake_source_file(column) -%}
    {{ column }} as {{ lake_source_file_column() }},
{%- endmacro %}

{#- The marts whose files are kept per raw file. -#}
{% macro lake_marts_by_raw_file() -%}
    {%- set marts = [] -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.package_name == project_name
        and node.config.meta.get('lake_files_by') -%}
        {%- do marts.append(node.name) -%}
    {%- endfor -%}
    {{- return(marts | sort) -}}
{%- endmacro %}

{#- The marts that together hold one row per raw line with its trip_key: where an incremental
    build looks up which published raw files share a key with the files it re-reads. -#}
{% macro lake_trip_key_marts() -%}
    {{- return(['trip_features', 'trips_rejected']) -}}
{%- endmacro %}

{#- The values of the vars a row's outputs depend on (rule bounds, split fractions). With the
    project's models and macros they make the build's `logic` checksum: when it differs from
    the published build's, the build is a full one. A new var the rules read belongs here. -#}
{% macro lake_output_vars() -%}
    {%- set names = [
        'test_fraction', 'validation_fraction', 'fare_min', 'fare_max', 'pickup_date_min',
        'pickup_date_max', 'lat_min', 'lat_max', 'lon_min', 'lon_max',
    ] -%}
    {%- set values = {} -%}
    {%- for name in names -%}
        {%- do values.update({name: var(name) | string}) -%}
    {%- endfor -%}
    {{- return(values) -}}
{%- endmacro %}

{#- The dbt project folder of this invocation. -#}
{% macro lake_project_dir() -%}
    {{- return(invocation_args_dict.get('project_dir') or '.') -}}
{%- endmacro %}

{#- Where the on-run-start hook declares the published trip keys this build keeps. -#}
{% macro carried_keys_relation() -%}
    {{ return(raw_source_relation().incorporate(path={'identifier': 'carried_trip_keys'})) }}
{%- endmacro %}

{#- DuckDB, in the raw-source hook: plan the build with the plugin (`lake_plan`); for an
    incremental one, find the unchanged raw files that share a trip_key with a new or changed
    file named before them (or with what such a changed or removed file held: which of their
    lines comes first may change) and re-read them too. Returns the raw
    files to read (none: all of them) and the published key files of every raw file kept. -#}
{% macro duckdb_plan_raw_files(relation, raw_folder) -%}
    {%- set settings = {
        'raw_folder': raw_folder,
        'project_dir': lake_project_dir(),
        'output_vars': lake_output_vars(),
        'marts': lake_marts_by_raw_file(),
        'column': lake_source_file_column(),
        'full_refresh': true if flags.FULL_REFRESH else false,
    } -%}
    {%- set planned = fromjson(run_query(
        'select lake_plan(' ~ sql_string(lake_root()) ~ ', ' ~ sql_string(invocation_id) ~ ', '
        ~ sql_string(tojson(settings)) ~ ')'
    ).columns[0].values()[0]) -%}
    {%- if planned.mode == 'full' -%}
        {{ log('lake: ' ~ planned.summary, info=True) }}
        {{ return({'files': none, 'carried': []}) }}
    {%- endif -%}
    {%- set published = planned.published_files -%}
    {%- set candidates = planned.reread -%}
    {%- set gone = planned.changed + planned.removed -%}
    {%- set unchanged = [] -%}
    {%- for mart in lake_trip_key_marts() -%}
        {%- for source in published[mart] if source not in candidates
            and source not in planned.removed and source not in unchanged -%}
            {%- do unchanged.append(source) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set affected = [] -%}
    {%- set unchanged_files = duckdb_key_files(published, unchanged) -%}
    {%- if (candidates or gone) and unchanged_files -%}
        {%- set probe_keys = [] -%}
        {%- if candidates -%}
            {%- set probe = relation.incorporate(path={'identifier': 'trip_lines_probe'}) -%}
            {%- set candidate_paths = [] -%}
            {%- for name in candidates -%}
                {%- do candidate_paths.append(raw_folder ~ '/' ~ name) -%}
            {%- endfor -%}
            {%- do run_query(
                'create schema if not exists ' ~ relation.include(identifier=false) ~ '; '
                ~ 'create or replace view ' ~ probe ~ ' as ' ~ duckdb_raw_lines(candidate_paths)
            ) -%}
            {%- do probe_keys.append(
                'select ' ~ md5_hex(strip_line_end("coalesce(raw_line, '')"))
                ~ ' as trip_key, source_file from ' ~ probe
            ) -%}
        {%- endif -%}
        {%- if duckdb_key_files(published, gone) -%}
            {%- do probe_keys.append(
                'select trip_key, ' ~ duckdb_source_of_file('filename') ~ ' as source_file '
                ~ 'from read_parquet(' ~ sql_list(duckdb_key_files(published, gone))
                ~ ', filename = true, union_by_name = true, hive_partitioning = false)'
            ) -%}
        {%- endif -%}
        {#- Only a file named before an unchanged one can change which of its lines is first. -#}
        {%- set shared = run_query(
            'with probe as (' ~ probe_keys | join(' union all ') ~ '), '
            ~ 'unchanged as (select trip_key, ' ~ duckdb_source_of_file('filename')
            ~ ' as source_file from read_parquet(' ~ sql_list(unchanged_files)
            ~ ', filename = true, union_by_name = true, hive_partitioning = false)) '
            ~ 'select distinct unchanged.source_file from unchanged inner join probe '
            ~ 'on unchanged.trip_key = probe.trip_key '
            ~ 'and probe.source_file < unchanged.source_file'
        ) -%}
        {%- for row in shared.rows -%}
            {%- do affected.append(row[0]) -%}
        {%- endfor -%}
        {%- if candidates -%}
            {%- do run_query('drop view if exists ' ~ probe) -%}
        {%- endif -%}
    {%- endif -%}
    {%- set reread = (candidates + affected) | sort -%}
    {%- set summary = run_query(
        'select lake_reread(' ~ sql_string(invocation_id) ~ ', ' ~ sql_string(tojson(reread))
        ~ ')'
    ).columns[0].values()[0] -%}
    {{ log('lake: ' ~ summary, info=True) }}
    {%- set kept = [] -%}
    {%- for source in unchanged if source not in affected -%}
        {%- do kept.append(source) -%}
    {%- endfor -%}
    {%- set paths = [] -%}
    {%- for name in reread -%}
        {%- do paths.append(raw_folder ~ '/' ~ name) -%}
    {%- endfor -%}
    {{ return({'files': paths, 'carried': duckdb_key_files(published, kept)}) }}
{%- endmacro %}

{#- The published files of the trip-key marts that hold rows of the given raw files. -#}
{% macro duckdb_key_files(published, sources) -%}
    {%- set files = [] -%}
    {%- for mart in lake_trip_key_marts() -%}
        {%- for source in sources -%}
            {%- do files.extend(published[mart].get(source, [])) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{- return(files) -}}
{%- endmacro %}

{#- The raw file a lake data file holds rows of, from its path. -#}
{% macro duckdb_source_of_file(path) -%}
    regexp_extract({{ path }}, '/{{ lake_source_file_column() }}=([^/]+)/', 1)
{%- endmacro %}

{#- The view `carried_trip_keys` (source dc_taxi): trip_key and raw file of every published
    row this build keeps without re-reading its raw file (none in a full build). -#}
{% macro duckdb_carried_trip_keys(files) -%}
    {%- if files %}
    select
        trip_key,
        {{ duckdb_source_of_file('filename') }} as source_file
    from read_parquet(
        {{ sql_list(files) }}, filename = true, union_by_name = true, hive_partitioning = false
    )
    {%- else %}
    {{ no_carried_trip_keys() }}
    {%- endif %}
{%- endmacro %}

{#- The view `carried_trip_keys` of a full build (either engine): no row. -#}
{% macro no_carried_trip_keys() -%}
    select
        cast(null as varchar) as trip_key,
        cast(null as varchar) as source_file
    where false
{%- endmacro %}

{#- Tests of a mart that judge each row alone (not_null, ranges, accepted values) need only read
    the rows this build wrote: an incremental build keeps the other rows as they were published,
    by a build that passed the same tests (tests are part of the rules' checksum). They say so
    with `where: "__lake_rows_of_this_build__"` (dbt_project.yml, for every mart test; a test
    that judges the whole table sets `where: "true"`). On DuckDB such a test reads the view
    `<mart>__this_build` that stage_to_lake declares; on Athena the whole table (an
    incremental build there appends to a copy of the published table). -#}
{% macro lake_rows_of_this_build_marker() -%}
    {{- return('__lake_rows_of_this_build__') -}}
{%- endmacro %}

{% macro lake_rows_of_this_build(relation) -%}
    {{- return(relation.incorporate(path={'identifier': relation.identifier ~ '__this_build'})) -}}
{%- endmacro %}

{% macro duckdb__get_where_subquery(relation) -%}
    {%- if config.get('where', '') == lake_rows_of_this_build_marker() -%}
        {{ return(lake_rows_of_this_build(relation)) }}
    {%- endif -%}
    {{ return(dbt.default__get_where_subquery(relation)) }}
{%- endmacro %}

{% macro athena__get_where_subquery(relation) -%}
    {%- if config.get('where', '') == lake_rows_of_this_build_marker() -%}
        {{ return(relation) }}
    {%- endif -%}
    {{ return(dbt.default__get_where_subquery(relation)) }}
{%- endmacro %}
