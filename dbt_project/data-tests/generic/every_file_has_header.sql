{#- Unified/valid: every raw file carries exactly one header line equal to the contract's (a
    CRLF ending removed, as in staging): `header_lines_column` counts them per file
    (stg_dc_taxi__raw_files). A file with a wrong or missing header fails here (its lines are
    still quarantined). -#}
{% test every_file_has_header(model, header_lines_column) %}
    {{ config(meta={'vacuum_principle': 'valid'}) }}

select * from {{ model }}
where {{ header_lines_column }} != 1

{% endtest %}
