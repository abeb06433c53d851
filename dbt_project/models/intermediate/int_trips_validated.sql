{#- The rule bounds, checked once: numbers and YYYY-MM-DD dates (macros/vars.sql). -#}
{%- set fare_min, fare_max = number_var('fare_min'), number_var('fare_max') -%}
{%- set lat_min, lat_max = number_var('lat_min'), number_var('lat_max') -%}
{%- set lon_min, lon_max = number_var('lon_min'), number_var('lon_max') -%}
{%- set pickup_date_min = date_var('pickup_date_min') -%}
{%- set pickup_date_max = date_var('pickup_date_max') -%}
{#- Built after stg_dc_taxi__raw_files and its tests: a raw file without the contract's header
    stops the build before this model reads every line. #}
-- depends_on: {{ ref('stg_dc_taxi__raw_files') }}

with

trips as (

    select * from {{ ref('stg_dc_taxi__trips') }}

),

carried_keys as (

    -- The first raw file, not re-read, that holds each key of the published rows an
    -- incremental build keeps (none in a full build).
    select
        trip_key,
        min(source_file) as source_file
    from {{ source('dc_taxi', 'carried_trip_keys') }}
    group by trip_key

),

copies as (

    -- Exact duplicate lines share a trip_key: every copy but the first (by file, then line)
    -- is a later copy (macros/duplicates.sql).
    {{ copies_of('trips', ref('stg_dc_taxi__trips')) }}

),

numbered as (

    -- A line is a duplicate when it is a later copy, or when a raw file named before its own,
    -- and not re-read, already holds its key.
    select
        copies.*,
        copies.is_later_copy
        or coalesce(carried_keys.source_file < copies.source_file, false) as is_duplicate
    from copies
    left join carried_keys
        on copies.trip_key = carried_keys.trip_key

),

validated as (

    select
        *,
        case
            when field_count != 27 or has_unreadable_bytes then 'malformed_line'
            when is_duplicate then 'duplicate'
            when pickup_at is null then 'invalid_pickup_time'
            when fare_amount is null then 'invalid_fare'
            when
                origin_lat is null
                or origin_lon is null
                or dest_lat is null
                or dest_lon is null
                then 'missing_coordinates'
            when
                fare_amount not between {{ fare_min }} and {{ fare_max }}
                then 'fare_out_of_range'
            when
                origin_lat not between {{ lat_min }} and {{ lat_max }}
                or dest_lat not between {{ lat_min }} and {{ lat_max }}
                or origin_lon not between {{ lon_min }} and {{ lon_max }}
                or dest_lon not between {{ lon_min }} and {{ lon_max }}
                then 'outside_service_area'
            when
                cast(pickup_at as date) not between
                date {{ sql_string(pickup_date_min) }}
                and date {{ sql_string(pickup_date_max) }}
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
