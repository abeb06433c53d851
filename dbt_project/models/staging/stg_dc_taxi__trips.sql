with

source as (

    select * from {{ source('dc_taxi', 'trip_lines') }}

),

data_lines as (

    select
        source_file,
        coalesce(raw_line, '') as raw_line
    from source
    where raw_line is distinct from '{{ raw_header() }}'

),

split_lines as (

    select
        source_file,
        raw_line,
        {{ split_line('raw_line') }} as raw_fields
    from data_lines

),

renamed as (

    select
        -- ids
        {{ md5_hex('raw_line') }} as trip_key,
        source_file,

        -- raw text
        raw_line,
        {{ array_length('raw_fields') }} as field_count,
        {{ raw_field_columns('raw_fields') }}
    from split_lines

),

parsed as (

    select
        -- ids
        trip_key,
        source_file,

        -- raw text
        raw_line,
        field_count,
        {%- for name in raw_field_names() %}
            {{ name | lower }},
        {%- endfor %}

        -- numerics
        {{ try_cast_number('fareamount') }} as fare_amount,
        {{ try_cast_number('gratuityamount') }} as gratuity_amount,
        {{ try_cast_number('surchargeamount') }} as surcharge_amount,
        {{ try_cast_number('extrafareamount') }} as extra_fare_amount,
        {{ try_cast_number('tollamount') }} as toll_amount,
        {{ try_cast_number('totalamount') }} as total_amount,
        {{ try_cast_number('mileage') }} as mileage_miles,
        {{ try_cast_number('duration') }} as duration_minutes,
        {{ try_cast_number('origin_block_latitude') }} as origin_lat,
        {{ try_cast_number('origin_block_longitude') }} as origin_lon,
        {{ try_cast_number('destination_block_latitude') }} as dest_lat,
        {{ try_cast_number('destination_block_longitude') }} as dest_lon,

        -- timestamps
        {{ parse_trip_timestamp('origindatetime_tr') }} as pickup_at,
        {{ parse_trip_timestamp('destinationdatetime_tr') }} as dropoff_at
    from renamed

)

select * from parsed
