{#- The raw file contract (docs/design.md): 27 pipe-delimited text fields, in this order. -#}
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

{#- A raw line without its line ending's `\r`. Both engines split the files on `\n` only
    (DuckDB: macros/raw_source.sql; Athena: LazySimpleSerDe), so a CRLF line arrives with one
    trailing `\r`: exactly one is removed here, so LF and CRLF lines, mixed in one file or not,
    read the same. Any other `\r` stays and makes the line unreadable (below). -#}
{% macro strip_line_end(line) -%}
    {{ return(adapter.dispatch('strip_line_end', 'dc_taxi')(line)) }}
{%- endmacro %}

{% macro default__strip_line_end(line) -%}
    {{ adapter_not_implemented('strip_line_end') }}
{%- endmacro %}

{% macro duckdb__strip_line_end(line) -%}
    case when ends_with({{ line }}, chr(13)) then {{ line }}[:-2] else {{ line }} end
{%- endmacro %}

{#- Trino regex: `[\s\S]` is any character (`.` stops at `\r`), `\z` the very end. -#}
{% macro athena__strip_line_end(line) -%}
    regexp_extract({{ line }}, '^([\s\S]*?)\r?\z', 1)
{%- endmacro %}

{#- True when a line (its ending removed) holds bytes no raw field may: a NUL, a `\r`, or
    U+FFFD, which is what bytes that are not UTF-8 read as. Such a line is `malformed_line`. -#}
{% macro has_unreadable_bytes(line) -%}
    {{ return(adapter.dispatch('has_unreadable_bytes', 'dc_taxi')(line)) }}
{%- endmacro %}

{% macro default__has_unreadable_bytes(line) -%}
    {{ adapter_not_implemented('has_unreadable_bytes') }}
{%- endmacro %}

{#- DuckDB: three substring searches cost a quarter of the regular expression's scan of the
    line (10 M lines: 3.6 s vs 13.1 s, benchmarks/RESULTS_full_scale.md). -#}
{% macro duckdb__has_unreadable_bytes(line) -%}
    (
        contains({{ line }}, chr(0))
        or contains({{ line }}, chr(13))
        or contains({{ line }}, chr(65533))
    )
{%- endmacro %}

{% macro athena__has_unreadable_bytes(line) -%}
    regexp_like({{ line }}, '{{ unreadable_byte_pattern() }}')
{%- endmacro %}

{#- NUL, CR, U+FFFD as a Java regex (Trino). -#}
{% macro unreadable_byte_pattern() -%}
    {{ return('[\\x00\\r\\x{FFFD}]') }}
{%- endmacro %}
