{#- post-hook of every mart: write it as a Parquet dataset at `<lake_path>/<model>/`.
    Reruns overwrite the whole folder, so no stale file or partition survives; an empty
    model writes an empty Parquet file (schema only), never an all-NULL row. A mart
    partitions its files by setting `meta: {lake_partition_by: <column>}`. -#}
{% macro export_to_lake() -%}
    {{ return(adapter.dispatch('export_to_lake', 'dc_taxi')()) }}
{%- endmacro %}

{#- On engines whose tables already live in the lake (Athena), there is nothing to copy. -#}
{% macro default__export_to_lake() -%}
{%- endmacro %}

{% macro duckdb__export_to_lake() -%}
    {%- set lake_root = (var('lake_path') | string).rstrip('/') -%}
    {%- set partition_by = model.config.get('meta', {}).get('lake_partition_by') -%}
    select lake_ensure_dir('{{ lake_root }}');
    copy (select * from {{ this }})
    to '{{ lake_root }}/{{ this.identifier }}' (
        format parquet,
        compression zstd,
        {%- if partition_by %}
        partition_by ({{ partition_by }}),
        {%- endif %}
        file_size_bytes '256MB',
        overwrite true
    )
{%- endmacro %}
