-- Reconciliation: every raw data line (header lines excluded) ends up either in
-- trip_features or in trips_rejected, exactly once. Returns a row when the counts differ.
-- An incremental build reads only some raw files: the lines of the others are the ones the
-- published build counted for them (data_quality_summary), and their rows are kept.
with

read_files as (

    select * from {{ ref('stg_dc_taxi__raw_files') }}

),

raw_lines as (

    select coalesce(sum(data_lines), 0) as row_count
    from read_files

),

kept_lines as (

    select coalesce(sum(dqs.row_count), 0) as row_count
    from {{ ref('data_quality_summary') }} as dqs
    where dqs.source_file not in (select read_files.source_file from read_files)

),

features as (

    select count(*) as row_count from {{ ref('trip_features') }}

),

rejected as (

    select count(*) as row_count from {{ ref('trips_rejected') }}

)

select
    raw_lines.row_count + kept_lines.row_count as raw_rows,
    features.row_count as accepted_rows,
    rejected.row_count as rejected_rows
from raw_lines
cross join kept_lines
cross join features
cross join rejected
where raw_lines.row_count + kept_lines.row_count != features.row_count + rejected.row_count
