{#- One row per raw file this build read, with its header and data line counts: the tests of
    the raw files read this small table instead of every raw line again (each read of the raw
    text costs as much as the build's own). A table, built and tested before
    int_trips_validated, so a file without the contract's header stops the build early. -#}
{{ config(materialized='table') }}

with

source as (

    select * from {{ source('dc_taxi', 'trip_lines') }}

),

lines as (

    -- As in stg_dc_taxi__trips: an empty line reads as NULL, a CRLF ending is not text.
    select
        source_file,
        {{ strip_line_end("coalesce(raw_line, '')") }} = '{{ raw_header() }}' as is_header
    from source

),

per_file as (

    select
        source_file,
        sum(case when is_header then 1 else 0 end) as header_lines,
        sum(case when is_header then 0 else 1 end) as data_lines
    from lines
    group by source_file

)

select * from per_file
