{{ config(
    materialized=lake_mart_materialization(per_raw_file=true),
    meta={'lake_files_by': lake_source_file_column()},
) }}

with

validated_trips as (

    select * from {{ ref('int_trips_validated') }}

),

rejected as (

    select
        trip_key,
        rejection_reason,
        source_file,
        raw_line,
        field_count,
        {{ split_line('raw_line') }} as raw_fields
    from validated_trips
    where not is_accepted

),

quarantined as (

    select
        -- ids
        trip_key,

        -- strings
        rejection_reason,
        source_file,
        raw_line,

        -- numerics
        field_count,

        -- the lake's raw-file key: a folder on DuckDB, a column on Athena (macros/lake_increment.sql)
        {{ lake_source_file('source_file') }}

        -- raw fields, as text
        {{ raw_field_columns('raw_fields') }}
    from rejected

)

select * from quarantined
