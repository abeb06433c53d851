-- Reconciliation: every raw data line (header lines excluded) ends up either in
-- trip_features or in trips_rejected, exactly once. Returns a row when the counts differ.
with

raw_lines as (

    select count(*) as row_count
    from {{ source('dc_taxi', 'trip_lines') }}
    where {{ strip_line_end("coalesce(raw_line, '')") }} != '{{ raw_header() }}'

),

features as (

    select count(*) as row_count from {{ ref('trip_features') }}

),

rejected as (

    select count(*) as row_count from {{ ref('trips_rejected') }}

)

select
    raw_lines.row_count as raw_rows,
    features.row_count as accepted_rows,
    rejected.row_count as rejected_rows
from raw_lines
cross join features
cross join rejected
where raw_lines.row_count != features.row_count + rejected.row_count
