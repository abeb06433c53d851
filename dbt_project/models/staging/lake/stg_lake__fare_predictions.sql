with

fare_predictions as (

    select * from {{ source('lake', 'fare_predictions') }}

),

renamed as (

    select
        -- ids
        trip_key,
        model_name,
        cast(model_version as varchar) as model_version,
        lake_snapshot_id,

        -- strings
        split,

        -- numerics
        cast(predicted_fare as double) as predicted_fare

    from fare_predictions

)

select * from renamed
