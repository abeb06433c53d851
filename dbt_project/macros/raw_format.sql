{#- The raw file contract (DESIGN.md): 27 pipe-delimited text fields, in this order. -#}
{% macro raw_field_names() -%}
    {{ return([
        'OBJECTID', 'TRIPTYPE', 'PROVIDERNAME', 'FAREAMOUNT', 'GRATUITYAMOUNT',
        'SURCHARGEAMOUNT', 'EXTRAFAREAMOUNT', 'TOLLAMOUNT', 'TOTALAMOUNT', 'PAYMENTTYPE',
        'ORIGINCITY', 'ORIGINSTATE', 'ORIGINZIP', 'DESTINATIONCITY', 'DESTINATIONSTATE',
        'DESTINATIONZIP', 'MILEAGE', 'DURATION', 'ORIGIN_BLOCK_LATITUDE',
        'ORIGIN_BLOCK_LONGITUDE', 'ORIGIN_BLOCKNAME', 'DESTINATION_BLOCK_LATITUDE',
        'DESTINATION_BLOCK_LONGITUDE', 'DESTINATION_BLOCKNAME', 'AIRPORT',
        'ORIGINDATETIME_TR', 'DESTINATIONDATETIME_TR',
    ]) }}
{%- endmacro %}

{#- The exact header line every raw file starts with. -#}
{% macro raw_header() -%}
    {{ return(raw_field_names() | join('|')) }}
{%- endmacro %}

{#- One column per raw field, lowercase names, taken by position from a split line. -#}
{% macro raw_field_columns(fields) -%}
    {%- for name in raw_field_names() %}
    {{ array_element(fields, loop.index) }} as {{ name | lower }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
