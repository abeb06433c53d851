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

        -- numerics
        count(*) as row_count
    from outcomes
    group by source_file, split, outcome

)

select * from counted
