{#- Partitioned by split: Athena's Iceberg table by `partitioned_by` (the last column), the
    DuckDB lake's files by `meta.lake_partition_by`. -#}
{%- set partition = 'split' -%}
{{ config(
    materialized=lake_mart_materialization(per_raw_file=true),
    partitioned_by=[partition],
    meta={'lake_partition_by': partition, 'lake_files_by': lake_source_file_column()},
) }}

with

validated_trips as (

    select * from {{ ref('int_trips_validated') }}

),

features as (

    select
        -- ids
        trip_key,

        -- label
        fare_amount,

        -- numerics
        origin_lat,
        origin_lon,
        dest_lat,
        dest_lon,
        cast(extract(year from pickup_at) as integer) as pickup_year,
        cast(extract(month from pickup_at) as integer) as pickup_month,
        cast({{ iso_day_of_week('pickup_at') }} as integer) as pickup_dow,
        cast(extract(hour from pickup_at) as integer) as pickup_hour,

        -- the lake's raw-file key: a folder on DuckDB, a column on Athena (macros/lake_increment.sql)
        {{ lake_source_file('source_file') }}

        -- partition (last, as Athena requires)
        split
    from validated_trips
    where is_accepted

)

select * from features
