{#- The book's split check: for each feature, a z-test of each held-out split's mean
    against the train split (z = (mean_split - mean_train) / (std_train / sqrt(n_split))).
    Returns the (feature, split) pairs with p < 0.05, i.e. |z| > 1.959964. Meant for
    `severity: warn`: with 2 splits x 8 features, some 5% of checks fail by chance. -#}
{% test splits_are_representative(model, features, split_column='split') %}

with

trips as (

    select * from {{ model }}

),

moments as (

    {% for feature in features %}
    select
        '{{ feature }}' as feature_name,
        {{ split_column }} as split,
        count({{ feature }}) as row_count,
        avg(cast({{ feature }} as double)) as mean_value,
        stddev_pop(cast({{ feature }} as double)) as std_value
    from trips
    group by {{ split_column }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

compared as (

    select
        held_out.feature_name,
        held_out.split,
        (held_out.mean_value - train.mean_value)
        / (train.std_value / sqrt(held_out.row_count)) as z_score
    from moments as held_out
    inner join moments as train
        on
            held_out.feature_name = train.feature_name
            and train.split = 'train'
    where
        held_out.split != 'train'
        and train.std_value > 0
        and held_out.row_count > 0

)

select * from compared
where abs(z_score) > 1.959964

{% endtest %}
