{#- The label and the 8 features, in order: the contract columns of trip_features
    (models/marts/trip_features.yml) other than its key, its split and the lake's raw-file
    key. feature_stats reads them here, so a feature added to the contract gets its
    statistics. Empty while dbt only parses. -#}
{% macro trip_feature_columns() -%}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.trip_features') if execute -%}
    {%- if not node -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set not_features = ['trip_key', 'split', lake_source_file_column()] -%}
    {{ return(node.columns.keys() | reject('in', not_features) | list) }}
{%- endmacro %}
