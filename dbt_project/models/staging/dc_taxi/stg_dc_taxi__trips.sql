with

source as (

    select * from {{ source('dc_taxi', 'trip_lines') }}

),

lines as (

    -- An empty line reads as NULL; a CRLF line's `\r` is part of its ending, not its text.
    select
        source_file,
        line_number,
        {{ strip_line_end("coalesce(raw_line, '')") }} as raw_line
    from source

),

data_lines as (

    select
        source_file,
        line_number,
        raw_line
    from lines
    where raw_line != '{{ raw_header() }}'

),

split_lines as (

    select
        source_file,
        line_number,
        raw_line,
        {{ split_line('raw_line') }} as raw_fields,
        {{ has_unreadable_bytes('raw_line') }} as has_unreadable_bytes
    from data_lines

),

renamed as (

    select
        -- ids
        {{ md5_hex('raw_line') }} as trip_key,
        source_file,
        line_number,

        -- raw text
        raw_line,
        {{ array_length('raw_fields') }} as field_count,
        {{ raw_field_columns('raw_fields') }},

        -- booleans
        has_unreadable_bytes
    from split_lines

),

parsed as (

    select
        -- ids
        trip_key,
        source_file,
        line_number,

        -- raw text
        raw_line,
        field_count,
        {%- for name in raw_field_names() %}
            {{ name | lower }},
        {%- endfor %}

        -- booleans
        has_unreadable_bytes,

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
