{#- Consistent: total = fare + gratuity + surcharge + extra + toll within $0.01 wherever all
    six amounts are present (`column_name` holds |total - sum of parts|, NULL otherwise). Fails
    (use `severity: warn`) when the share of inconsistent rows exceeds the
    `max_inconsistent_total_share` var. -#}
{% test total_amount_consistent(model, column_name) %}
    {{ config(meta={'vacuum_principle': 'consistent'}) }}

with

complete as (

    select {{ column_name }} > 0.01 as is_inconsistent
    from {{ model }}
    where {{ column_name }} is not null

),

share as (

    select
        count(*) as complete_rows,
        sum(case when is_inconsistent then 1 else 0 end) as inconsistent_rows
    from complete

)

select * from share
where inconsistent_rows > {{ number_var('max_inconsistent_total_share') }} * complete_rows

{% endtest %}
