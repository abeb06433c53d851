{#- Every split the fraction vars promise (fraction > 0) has at least one row: a tiny input can
    leave validation or test empty, and training cannot run on an empty split. One row per
    empty split, with what to do. -#}
{% test every_split_has_rows(model, column_name) %}
    {{ config(meta={'vacuum_principle': 'split'}) }}

{%- set fractions = split_fractions() -%}
{%- set promised = {
    'test': (fractions['test'], 'add raw data, or set the test_fraction var to 0'),
    'validation': (
        fractions['validation'], 'add raw data, or set the validation_fraction var to 0'
    ),
    'train': (fractions['train'], 'add raw data'),
} -%}

with

promised_splits as (

    {%- for name, (fraction, fix) in promised.items() if fraction > 0 %}
    select
        '{{ name }}' as split,
        {{ fraction }} as fraction,
        '{{ fix }}' as fix
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

rows_per_split as (

    select
        {{ column_name }} as split,
        count(*) as row_count
    from {{ model }}
    group by {{ column_name }}

)

select
    promised_splits.split,
    promised_splits.fraction,
    promised_splits.fix
from promised_splits
left join rows_per_split
    on promised_splits.split = rows_per_split.split
where rows_per_split.split is null

{% endtest %}
