{#- Unified/valid: every raw file carries exactly one header line equal to the contract's (a
    CRLF ending removed, as in staging). A file with a wrong or missing header fails here (its
    lines are still quarantined). -#}
{% test every_file_has_header(model, file_column, line_column) %}
    {{ config(meta={'vacuum_principle': 'valid'}) }}

with

lines as (

    select * from {{ model }}

),

per_file as (

    select
        {{ file_column }} as source_file,
        sum(
            case when {{ strip_line_end(line_column) }} = '{{ raw_header() }}' then 1 else 0 end
        ) as header_lines
    from lines
    group by {{ file_column }}

)

select * from per_file
where header_lines != 1

{% endtest %}
