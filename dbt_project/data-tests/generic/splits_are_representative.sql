{#- The book's split check: for each feature, a z-test of each held-out split's mean against the
    train split, z = (mean_split - mean_train) / (std_train / sqrt(n_split)), population std.

    The decision controls the family-wise error over all the pairs it compares (Bonferroni):
    m = the (feature, held-out split) pairs compared in this data (a held-out split with rows;
    a feature constant in train has no z and is not counted), and a pair fails when
    |z| > the 1 - alpha / (2 m) normal quantile, i.e. p < alpha / m. A correct random split
    then warns with probability at most alpha, not once per ~20 pairs. (Holm's step-down
    procedure warns on exactly the same data: it rejects anything only when the smallest p is
    below alpha / m.)

    Returns each failing pair with its z, p-value, the corrected thresholds and m. The
    data-quality page (reports/split_analysis.py) makes the same decision with the same alpha. -#}
{% test splits_are_representative(model, features, split_column='split', alpha=0.05) %}
    {{ config(meta={'vacuum_principle': 'split'}) }}

{%- if not (0 < alpha < 1) -%}
    {{ exceptions.raise_compiler_error(
        "splits_are_representative: alpha must be between 0 and 1, got " ~ alpha
    ) }}
{%- endif -%}
{%- set held_out_splits = split_fractions().keys() | reject('equalto', 'train') | list -%}
{%- set most_comparisons = (features | length) * (held_out_splits | length) %}

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
        held_out.row_count,
        (held_out.mean_value - train.mean_value)
        / (train.std_value / sqrt(held_out.row_count)) as z_score
    from moments as held_out
    inner join moments as train
        on
            held_out.feature_name = train.feature_name
            and train.split = 'train'
    where
        held_out.split in (
            {%- for split in held_out_splits %}
            {{ sql_string(split) }}{% if not loop.last %},{% endif %}
            {%- endfor %}
        )
        and train.std_value > 0
        and held_out.row_count > 0

),

counted as (

    select
        *,
        count(*) over () as comparisons
    from compared

),

thresholds as (

    select
        *,
        -- Bonferroni: the 1 - alpha / (2 m) normal quantile, computed when this compiled.
        case comparisons
            {%- for m in range(1, most_comparisons + 1) %}
            when {{ m }} then {{ double_literal(bonferroni_z_threshold(alpha, m)) }}
            {%- endfor %}
        end as z_threshold,
        {{ double_literal(alpha) }} / comparisons as p_value_threshold
    from counted

),

failing as (

    select
        feature_name,
        split,
        row_count,
        z_score,
        {{ normal_two_sided_p_value('z_score') }} as p_value,
        z_threshold,
        p_value_threshold,
        comparisons
    from thresholds
    where abs(z_score) > z_threshold

)

select * from failing

{% endtest %}
