{#- Each split's share of rows is within `split_fraction_tolerance` of its var, plus four
    binomial standard deviations so that small data sets do not fail by chance. -#}
{% test split_fractions_within_tolerance(model, column_name) %}
    {{ config(meta={'vacuum_principle': 'split'}) }}

{%- set expected = split_fractions() -%}

with

rows_per_split as (

    select
        {{ column_name }} as split,
        count(*) as row_count
    from {{ model }}
    group by {{ column_name }}

),

shares as (

    select
        split,
        sum(row_count) over () as total_rows,
        cast(row_count as double) / sum(row_count) over () as actual_fraction,
        case split
            {%- for name, fraction in expected.items() %}
            when '{{ name }}' then {{ fraction }}
            {%- endfor %}
        end as expected_fraction
    from rows_per_split

)

select * from shares
where
    expected_fraction is null
    or abs(actual_fraction - expected_fraction) > {{ number_var('split_fraction_tolerance') }}
    + 4 * sqrt(expected_fraction * (1 - expected_fraction) / total_rows)

{% endtest %}
