{#- How good each scored model version is on this build's accepted trips: RMSE, MAE and bias
    (mean predicted - actual, dollars) per split, overall and broken down by pickup month, by
    pickup hour, by decile of the actual fare, plus a histogram of the residuals. Only trips
    the model scored count: `trip_count` says how many. -#}
{{ config(materialized=lake_mart_materialization()) }}

{%- set breakdowns = {
    'pickup_month': "cast(pickup_year as varchar) || '-' || lpad(cast(pickup_month as varchar), 2, '0')",
    'pickup_hour': "lpad(cast(pickup_hour as varchar), 2, '0')",
    'fare_decile': "lpad(cast(fare_decile as varchar), 2, '0')",
    'residual_dollars': "cast(residual_bin as varchar)",
} -%}

with

trip_features as (

    select * from {{ ref('trip_features') }}

),

fare_predictions as (

    select * from {{ ref('stg_lake__fare_predictions') }}

),

scored as (

    select
        -- ids
        fare_predictions.model_name,
        fare_predictions.model_version,
        fare_predictions.lake_snapshot_id as scored_snapshot_id,
        trip_features.split,

        -- numerics
        trip_features.pickup_year,
        trip_features.pickup_month,
        trip_features.pickup_hour,
        trip_features.fare_amount,
        fare_predictions.predicted_fare,
        fare_predictions.predicted_fare - trip_features.fare_amount as residual,
        -- Deciles of the actual fare within the model's split; trip_key breaks ties so that
        -- equal fares fall into deciles the same way on every run and engine.
        ntile(10) over (
            partition by
                fare_predictions.model_name,
                fare_predictions.model_version,
                trip_features.split
            order by trip_features.fare_amount, trip_features.trip_key
        ) as fare_decile,
        -- Whole dollars, the tails folded into -10 and 10.
        least(greatest(
            cast(floor(fare_predictions.predicted_fare - trip_features.fare_amount) as integer),
            -10
        ), 10) as residual_bin

    from fare_predictions
    inner join trip_features
        on fare_predictions.trip_key = trip_features.trip_key

),

by_bucket as (

    {% for breakdown, bucket in breakdowns.items() %}
        select
            model_name,
            model_version,
            scored_snapshot_id,
            split,
            '{{ breakdown }}' as breakdown,
            {{ bucket }} as bucket,
            residual,
            fare_amount,
            predicted_fare
        from scored
        union all
    {% endfor %}
    select
        model_name,
        model_version,
        scored_snapshot_id,
        split,
        'overall' as breakdown,
        'all' as bucket,
        residual,
        fare_amount,
        predicted_fare
    from scored

),

metrics as (

    select
        -- ids
        model_name,
        model_version,
        max(scored_snapshot_id) as scored_snapshot_id,
        split,
        breakdown,
        bucket,

        -- numerics
        count(*) as trip_count,
        sqrt(avg(residual * residual)) as rmse,
        avg(abs(residual)) as mae,
        avg(residual) as bias,
        avg(fare_amount) as mean_fare,
        avg(predicted_fare) as mean_predicted_fare,
        min(fare_amount) as min_fare,
        max(fare_amount) as max_fare

    from by_bucket
    group by model_name, model_version, split, breakdown, bucket

)

select * from metrics
