{{ config(
    materialized=lake_mart_materialization(per_raw_file=true),
    meta={'lake_files_by': lake_source_file_column()},
) }}

with

validated_trips as (

    select * from {{ ref('int_trips_validated') }}

),

outcomes as (

    select
        source_file,
        split,
        coalesce(rejection_reason, 'accepted') as outcome
    from validated_trips

),

counted as (

    select
        -- strings
        source_file,
        split,
        outcome,

        -- the lake's raw-file key: a folder on DuckDB, a column on Athena (macros/lake_increment.sql)
        {{ lake_source_file('source_file') }}

        -- numerics
        count(*) as row_count
    from outcomes
    group by source_file, split, outcome

)

select * from counted
