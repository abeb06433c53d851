{#- on-run-start: declare the `lake` source — lake tables that tools outside dbt write
    (`fare_predictions`, by `python -m training.predict`) — at their current published snapshot.
    The columns are lakehouse/predictions.py's SCHEMA. -#}
{% macro declare_lake_sources() -%}
    {{ return(adapter.dispatch('declare_lake_sources', 'dc_taxi')()) }}
{%- endmacro %}

{#- Where the source's tables are: the target schema (dbt source `lake`). -#}
{% macro lake_source_relation(name) -%}
    {{ return(api.Relation.create(
        database=target.database, schema=target.schema, identifier=name
    )) }}
{%- endmacro %}

{% macro fare_predictions_columns() -%}
    {{ return([
        ('trip_key', 'varchar'),
        ('split', 'varchar'),
        ('predicted_fare', 'double'),
        ('model_name', 'varchar'),
        ('model_version', 'varchar'),
        ('lake_snapshot_id', 'bigint'),
    ]) }}
{%- endmacro %}

{% macro default__declare_lake_sources() -%}
    {{ exceptions.raise_compiler_error(
        "the lake is not implemented for adapter '" ~ adapter.type() ~ "' (duckdb, athena)"
    ) }}
{%- endmacro %}

{#- DuckDB: a view over the table's current data files, or an empty view of the same columns
    before the first `training.predict`. -#}
{% macro duckdb__declare_lake_sources() -%}
    {%- set relation = lake_source_relation('fare_predictions') -%}
    {%- set columns = fare_predictions_columns() -%}
    {%- set files = [] -%}
    {%- if lake_hook_runs() -%}
        {%- set found = run_query(
            'select lake_table_files(' ~ sql_string(lake_root()) ~ ", 'fare_predictions')"
        ) -%}
        {%- set files = fromjson(found.rows[0][0]) -%}
    {%- endif -%}
    create schema if not exists {{ relation.include(identifier=false) }};
    create or replace view {{ relation }} as
    {% if files -%}
        select
            {%- for name, type in columns %}
            cast({{ name }} as {{ type }}) as {{ name }}{{ ',' if not loop.last }}
            {%- endfor %}
        from read_parquet({{ sql_list(files) }})
    {%- else -%}
        select
            {%- for name, type in columns %}
            cast(null as {{ type }}) as {{ name }}{{ ',' if not loop.last }}
            {%- endfor %}
        where false
    {%- endif %}
{%- endmacro %}

{#- Athena: the Iceberg table in the Glue database the marts are published to; created empty
    (Athena DDL) at `<lake_path>/fare_predictions` if it does not exist yet. -#}
{% macro athena__declare_lake_sources() -%}
    {%- set relation = lake_source_relation('fare_predictions') -%}
    create table if not exists `{{ relation.schema }}`.`{{ relation.identifier }}` (
        {%- for name, type in fare_predictions_columns() %}
        {{ name }} {{ 'string' if type == 'varchar' else type }}{{ ',' if not loop.last }}
        {%- endfor %}
    )
    partitioned by (model_name, model_version)
    location {{ sql_string(lake_root() ~ '/fare_predictions') }}
    tblproperties ('table_type' = 'ICEBERG', 'format' = 'parquet', 'write_compression' = 'zstd')
{%- endmacro %}
