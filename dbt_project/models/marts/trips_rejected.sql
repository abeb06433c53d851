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

        -- raw fields, as text
        {{ raw_field_columns('raw_fields') }}
    from rejected

)

select * from quarantined
