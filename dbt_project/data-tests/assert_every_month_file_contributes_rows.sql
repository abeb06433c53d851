-- Unified: every raw month file contributes at least one accepted trip.
with

raw_files as (

    select source_file from {{ ref('stg_dc_taxi__raw_files') }}

),

accepted_per_file as (

    select
        source_file,
        sum(row_count) as accepted_rows
    from {{ ref('data_quality_summary') }}
    where outcome = 'accepted'
    group by source_file

)

select
    raw_files.source_file,
    coalesce(accepted_per_file.accepted_rows, 0) as accepted_rows
from raw_files
left join accepted_per_file
    on raw_files.source_file = accepted_per_file.source_file
where coalesce(accepted_per_file.accepted_rows, 0) = 0
