{{ config(
    materialized=lake_mart_materialization(),
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

        -- the lake's per-raw-file folder (macros/lake_increment.sql; not stored in the files)
        {{ lake_source_file('source_file') }}

        -- numerics
        count(*) as row_count
    from outcomes
    group by source_file, split, outcome

)

select * from counted
