{#- Consistent: total = fare + gratuity + surcharge + extra + toll within $0.01 wherever all
    six amounts are present. Fails (use `severity: warn`) when the share of inconsistent
    rows exceeds the `max_inconsistent_total_share` var. -#}
{% test total_amount_consistent(model, where_expression='true') %}

with

complete as (

    select
        abs(
            total_amount
            - (fare_amount + gratuity_amount + surcharge_amount + extra_fare_amount + toll_amount)
        ) > 0.01 as is_inconsistent
    from {{ model }}
    where
        ({{ where_expression }})
        and total_amount is not null
        and fare_amount is not null
        and gratuity_amount is not null
        and surcharge_amount is not null
        and extra_fare_amount is not null
        and toll_amount is not null

),

share as (

    select
        count(*) as complete_rows,
        sum(case when is_inconsistent then 1 else 0 end) as inconsistent_rows
    from complete

)

select * from share
where inconsistent_rows > {{ var('max_inconsistent_total_share') }} * complete_rows

{% endtest %}
