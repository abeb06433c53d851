{{ config(materialized=lake_mart_materialization()) }}

{%- set columns = trip_feature_columns() -%}

with

trip_features as (

    select * from {{ ref('trip_features') }}

),

train as (

    select * from trip_features
    where split = 'train'

),

per_feature as (

    {% for column in columns %}
        select
            '{{ column }}' as feature_name,
            count({{ column }}) as row_count,
            avg(cast({{ column }} as double)) as mean_value,
            stddev_pop(cast({{ column }} as double)) as std_value,
            cast(min({{ column }}) as double) as min_value,
            cast(max({{ column }}) as double) as max_value
        from train
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from per_feature
