{#- The enforced contracts of the marts that code outside dbt reads (trip_features,
    trips_rejected, feature_stats, data_quality_summary) describe the table readers get. On
    DuckDB a mart kept per raw file (`meta.lake_files_by`) also selects that column, the
    folder key of its lake files: the post-hook turns it into folders and the table does not
    store it (macros/lake_increment.sql), so its contract check leaves that one column out.
    Every other model, and Athena (whose marts do not select it), check as dbt does. -#}
{% macro duckdb__get_assert_columns_equivalent(sql) -%}
    {%- set files_by = config.get('meta', {}).get('lake_files_by') -%}
    {%- if files_by -%}
        {{ return(assert_columns_equivalent(
            'select * exclude (' ~ files_by ~ ') from (' ~ sql ~ ') as lake_mart'
        )) }}
    {%- endif -%}
    {{ return(assert_columns_equivalent(sql)) }}
{%- endmacro %}

{#- The label and the 8 features, in order: the contract columns of trip_features
    (models/marts/trip_features.yml) other than its key and its split. feature_stats reads
    them here, so a feature added to the contract gets its statistics. Empty while dbt only
    parses. -#}
{% macro trip_feature_columns() -%}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.trip_features') if execute -%}
    {%- if not node -%}
        {{ return([]) }}
    {%- endif -%}
    {{ return(node.columns.keys() | reject('in', ['trip_key', 'split']) | list) }}
{%- endmacro %}
