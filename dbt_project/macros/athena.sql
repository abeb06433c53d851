{#- Athena-only helpers: the raw source DDL and the guard that keeps every output location away
    from the raw files. The dispatching macros that use them live beside their DuckDB versions. -#}

{#- Athena's Hive DDL (`create external table ... location`) escapes string literals with a
    backslash, its Trino SQL by doubling quotes: no one quoting is right for both, so an S3
    location with `'` or `\` is refused instead. -#}
{% macro athena_has_unquotable(location) -%}
    {{ return("'" in location or '\\' in location) }}
{%- endmacro %}

{#- The raw_path var as an `s3://bucket/prefix` without a trailing slash. -#}
{% macro athena_raw_prefix() -%}
    {%- set raw_path = (var('raw_path') | string).strip() -%}
    {%- if not raw_path.startswith('s3://') or raw_path.rstrip('/') | length <= 5
        or athena_has_unquotable(raw_path) -%}
        {{ exceptions.raise_compiler_error(
            "on the athena target the raw_path var must be an s3:// prefix without `'` or `\\`, "
            ~ "got '" ~ raw_path ~ "' — pass --vars '{raw_path: s3://<bucket>/<prefix>}' "
            ~ "(upload the files with `python -m scripts.upload_raw`)"
        ) }}
    {%- endif -%}
    {{ return(raw_path.rstrip('/')) }}
{%- endmacro %}

{% macro athena_create_raw_schema(relation) -%}
    create schema if not exists {{ relation.without_identifier().render_hive() }}
{%- endmacro %}

{#- One string column per line. LazySimpleSerDe with no escape character and no quote
    handling; `serialization.last.column.takes.rest` keeps a line whole even if it contains
    the (never used) \001 delimiter; an empty line reads as NULL, as on DuckDB. No header
    skipping: staging drops header lines and a test checks each file has exactly one. -#}
{% macro athena_create_raw_lines_table(relation, raw_prefix) -%}
    create external table {{ relation.render_hive() }} (
        raw_line string
    )
    row format serde 'org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe'
    with serdeproperties (
        'field.delim' = '\001',
        'serialization.last.column.takes.rest' = 'true',
        'serialization.null.format' = ''
    )
    stored as textfile
    location {{ sql_string(raw_prefix ~ '/') }}
{%- endmacro %}

{#- The source dbt reads: file name (not the full object path) and line, for `taxi_*.txt`
    objects directly under the prefix only, the same files DuckDB's glob matches. -#}
{% macro athena_create_raw_source_view(relation, lines_relation, raw_prefix, files=none) -%}
    create or replace view {{ relation }} as
    with lines as (
        select
            "$path" as object_path,
            regexp_extract("$path", '[^/]*$') as source_file,
            raw_line
        from {{ lines_relation }}
        {%- if files is not none %}
        {#- An incremental build reads only these objects: a filter on "$path" itself, not on
            an expression of it, lets Athena skip every other object. #}
        where
            {%- if files %}
            "$path" in (
                {%- for name in files %}
                {{ sql_string(raw_prefix ~ '/' ~ name) }}{{ ',' if not loop.last }}
                {%- endfor %}
            )
            {%- else %}
            false
            {%- endif %}
        {%- endif %}
    )
    select
        source_file,
        {#- Athena cannot tell a line's position in its file; its duplicate check does not need
            it (macros/duplicates.sql). #}
        cast(null as bigint) as line_number,
        raw_line
    from lines
    where
        object_path = {{ sql_string(raw_prefix ~ '/') }} || source_file
        and regexp_like(source_file, '^taxi_.*[.]txt$')
{%- endmacro %}

{#- `bucket/key/prefix/` for comparing S3 locations, whatever the s3 scheme spelling. -#}
{% macro s3_key_prefix(uri) -%}
    {{ return(modules.re.sub('^s3[an]?://', '', uri | string).rstrip('/') ~ '/') }}
{%- endmacro %}

{#- Every S3 location dbt-athena may write to or delete from, as (location, setting, is_root).
    A root holds tables in sub-folders; an exact location (external_location) is deleted as a
    bare key prefix, so `s3://b/lake` would also delete `s3://b/lake-raw/...`. -#}
{% macro athena_output_locations() -%}
    {%- set locations = [] -%}
    {%- for setting in ['s3_staging_dir', 's3_data_dir', 's3_tmp_table_dir'] -%}
        {%- if target.get(setting) -%}
            {%- do locations.append((target.get(setting), 'profile ' ~ setting, true)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for node in graph.nodes.values() if node.resource_type in ['model', 'seed', 'snapshot'] -%}
        {%- for setting in ['s3_data_dir', 's3_tmp_table_dir', 'external_location'] -%}
            {%- set location = node.config.get(setting) -%}
            {%- if location -%}
                {%- do locations.append(
                    (location, node.name ~ ' ' ~ setting, setting != 'external_location')
                ) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(locations) }}
{%- endmacro %}

{#- The first (location, setting) whose writes or deletes could reach files under raw_prefix,
    or none. `locations` as returned by athena_output_locations(). -#}
{% macro athena_overlapping_location(raw_prefix, locations) -%}
    {%- set raw_key = s3_key_prefix(raw_prefix) -%}
    {%- for location, setting, is_root in locations -%}
        {%- set output_key = s3_key_prefix(location) -%}
        {%- set deleted_prefix = output_key if is_root else output_key.rstrip('/') -%}
        {%- if raw_key.startswith(deleted_prefix) or output_key.startswith(raw_key) -%}
            {{ return((location, setting)) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}

{#- dbt-athena writes every output location into its SQL as a string literal without escaping
    it: one from lake_path or a DBT_ATHENA_* setting with `'` or `\` is refused. -#}
{% macro assert_output_locations_quotable() -%}
    {%- for location, setting, _ in athena_output_locations()
        if athena_has_unquotable(location | string) -%}
        {{ exceptions.raise_compiler_error(
            "output location '" ~ location ~ "' (" ~ setting ~ ") contains `'` or `\\`, "
            ~ "which dbt-athena writes into SQL unescaped — choose an S3 prefix without them"
        ) }}
    {%- endfor -%}
{%- endmacro %}

{#- dbt-athena deletes a table's S3 location before every CTAS (and on drop). If any output
    location overlapped the raw prefix, a build could delete the raw files: refuse to start. -#}
{% macro assert_outputs_clear_of_raw(raw_prefix) -%}
    {%- set overlap = athena_overlapping_location(raw_prefix, athena_output_locations()) -%}
    {%- if overlap -%}
        {{ exceptions.raise_compiler_error(
            "output location '" ~ overlap[0] ~ "' (" ~ overlap[1] ~ ") overlaps the raw prefix '"
            ~ raw_prefix ~ "': dbt-athena deletes table locations before rebuilding them, so "
            ~ "the raw files could be deleted — put raw files and outputs under separate "
            ~ "prefixes (DBT_ATHENA_S3_DATA_DIR, DBT_ATHENA_S3_STAGING_DIR, lake_path)"
        ) }}
    {%- endif -%}
{%- endmacro %}
