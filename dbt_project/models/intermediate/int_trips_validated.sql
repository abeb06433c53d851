with

trips as (

    select * from {{ ref('stg_dc_taxi__trips') }}

),

numbered as (

    -- Exact duplicate lines share a trip_key; the first one (by file) is kept.
    select
        *,
        row_number() over (
            partition by trip_key
            order by source_file
        ) as key_occurrence
    from trips

),

validated as (

    select
        *,
        case
            when field_count != 27 then 'malformed_line'
            when key_occurrence > 1 then 'duplicate'
            when pickup_at is null then 'invalid_pickup_time'
            when fare_amount is null then 'invalid_fare'
            when
                origin_lat is null
                or origin_lon is null
                or dest_lat is null
                or dest_lon is null
                then 'missing_coordinates'
            when
                fare_amount not between {{ var('fare_min') }} and {{ var('fare_max') }}
                then 'fare_out_of_range'
            when
                origin_lat not between {{ var('lat_min') }} and {{ var('lat_max') }}
                or dest_lat not between {{ var('lat_min') }} and {{ var('lat_max') }}
                or origin_lon not between {{ var('lon_min') }} and {{ var('lon_max') }}
                or dest_lon not between {{ var('lon_min') }} and {{ var('lon_max') }}
                then 'outside_service_area'
            when
                cast(pickup_at as date) not between
                date '{{ var("pickup_date_min") }}' and date '{{ var("pickup_date_max") }}'
                then 'pickup_time_out_of_range'
        end as rejection_reason
    from numbered

),

assigned as (

    select
        -- ids
        trip_key,
        source_file,

        -- strings
        -- Only the quarantine needs the raw text; accepted rows carry their features instead.
        case when rejection_reason is not null then raw_line end as raw_line,
        rejection_reason,

        -- numerics
        field_count,
        {{ split_bucket('trip_key') }} as split_bucket,
        fare_amount,
        abs(
            total_amount
            - (fare_amount + gratuity_amount + surcharge_amount + extra_fare_amount + toll_amount)
        ) as total_amount_gap,
        mileage_miles,
        origin_lat,
        origin_lon,
        dest_lat,
        dest_lon,

        -- booleans
        rejection_reason is null as is_accepted,

        -- timestamps
        pickup_at
    from validated

),

final as (

    select
        *,
        {{ assign_split('split_bucket') }} as split
    from assigned

)

select * from final
