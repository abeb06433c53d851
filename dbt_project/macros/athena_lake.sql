{#- Write–audit–publish of the lake on Athena (docs/aws.md, "The lake on Athena").

    Athena cannot do what the DuckDB path does: its SQL has no Iceberg branches, accepts no
    custom table properties and writes no custom snapshot summary properties, and it cannot
    commit several tables at once. So on Athena:
    - write: each mart is a dbt-athena Iceberg table in the audit database `<schema>_audit`
      (athena__generate_schema_name below), at a fresh `<lake_path>/<mart>/<uuid>/`. Readers
      never read the audit database; every test of the mart does.
    - the post-hook `stage_to_lake()` stamps the audit table's Glue entry with the Glue table
      parameter `dbt.invocation_id` (Athena cannot put it in the snapshot summary).
    - publish (on-run-end, only if `lake_publish_blocker(results)` finds nothing): for each mart,
      trip_features last, one Glue UpdateTable points `<schema>.<mart>` at the audit table's
      Iceberg metadata, stamp included (dbt-athena's swap_table), then the audit name is
      forgotten (Glue only: the files now belong to the published table). The first publish of a
      mart renames the audit table instead.
    Readers pin trip_features' build and take every other mart at the same `dbt.invocation_id`,
    from the Glue table versions if that mart was already swapped further: a reader never mixes
    builds, even while a publish is half done. -#}

{#- Where dbt builds the marts on Athena (the audit database) and where they are published. -#}
{% macro athena_lake_audit_schema() -%}
    {{- return(target.schema ~ '_audit') -}}
{%- endmacro %}

{% macro athena_lake_relation(mart, audit=false) -%}
    {{- return(api.Relation.create(
        database=target.database,
        schema=athena_lake_audit_schema() if audit else target.schema,
        identifier=mart,
        type='table',
    )) -}}
{%- endmacro %}

{#- The Glue table parameter naming the build that wrote a published table. -#}
{% macro athena_lake_invocation_key() -%}
    {{- return('dbt.invocation_id') -}}
{%- endmacro %}

{#- Marts are built in the audit database; every other node where dbt's default puts it. -#}
{% macro athena__generate_schema_name(custom_schema_name, node) -%}
    {%- if node is not none and node.resource_type == 'model' and node.fqn[1:2] == ['marts'] -%}
        {{- athena_lake_audit_schema() -}}
    {%- else -%}
        {{- default__generate_schema_name(custom_schema_name, node) | trim -}}
    {%- endif -%}
{%- endmacro %}

{#- The Glue parameters of a table, or none if it does not exist. -#}
{% macro athena_lake_glue_parameters(relation) -%}
    {%- set found = adapter.get_glue_table(relation) -%}
    {{- return(found['Table'].get('Parameters', {}) if found else none) -}}
{%- endmacro %}

{#- The statement that publishes a mart the first time: Athena renames Iceberg tables across
    databases without touching their files. -#}
{% macro athena_lake_rename_sql(from_relation, to_relation) -%}
    alter table {{ from_relation.render_hive() }} rename to {{ to_relation.render_hive() }}
{%- endmacro %}

{#- Stamp `relation`'s Glue entry with this build's invocation id (a Glue table parameter). -#}
{% macro athena_lake_stamp(relation) -%}
    {%- do adapter.persist_docs_to_glue(
        relation,
        {
            'description': 'dc_taxi lake mart ' ~ relation.identifier ~ ', dbt build '
                ~ invocation_id,
            'unique_id': 'model.' ~ project_name ~ '.' ~ relation.identifier,
            'config': {'materialized': 'table', 'meta': {athena_lake_invocation_key(): invocation_id}},
            'columns': {},
        },
        true,
        false,
    ) -%}
{%- endmacro %}

{% macro athena__begin_lake_build() -%}
    {%- set root = lake_root() -%}
    {%- if not root.startswith('s3://') or root | length <= 5 -%}
        {{ exceptions.raise_compiler_error(
            "on the athena target the lake_path var must be an s3:// prefix, got '" ~ root
            ~ "' — pass --vars '{lake_path: s3://<bucket>/<prefix>}' (readers find the marts "
            ~ "at <lake_path>/<mart>)"
        ) }}
    {%- endif -%}
    {%- if not lake_hook_runs() -%}
        {{ return('') }}
    {%- endif -%}
    {#- A publish killed between its swap and forgetting the audit name leaves an audit table
        that IS the published one; dbt-athena would delete its files when it rebuilds the
        audit table. Forget such names first (Glue only, the files stay). -#}
    {%- for mart in lake_marts() -%}
        {%- set audit = athena_lake_glue_parameters(athena_lake_relation(mart, audit=true)) -%}
        {%- set published = athena_lake_glue_parameters(athena_lake_relation(mart)) -%}
        {%- if audit and published
            and audit.get('metadata_location') == published.get('metadata_location') -%}
            {%- do adapter.delete_from_glue_catalog(athena_lake_relation(mart, audit=true)) -%}
            {{ log('lake: forgot ' ~ athena_lake_relation(mart, audit=true)
                ~ ', left over by an interrupted publish', info=True) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return('') }}
{%- endmacro %}

{% macro athena__stage_to_lake() -%}
    {%- if not lake_hook_runs() -%}
        {{ return('') }}
    {%- endif -%}
    {%- set table_type = adapter.get_glue_table_type(this) -%}
    {%- if table_type is none or table_type.value != 'iceberg_table' -%}
        {{ exceptions.raise_compiler_error(
            this ~ " is not an Iceberg table: every mart must be one (table_type: iceberg in "
            ~ "dbt_project.yml)"
        ) }}
    {%- endif -%}
    {%- do athena_lake_stamp(this) -%}
    {{ return('') }}
{%- endmacro %}

{% macro athena__publish_lake(results) -%}
    {#- trip_features last: readers pin its build, so until it moves they keep reading the
        previous build, whose other marts they find in the Glue table versions. -#}
    {%- set marts = lake_marts() | reject('equalto', 'trip_features') | list -%}
    {%- if 'trip_features' in lake_marts() -%}
        {%- do marts.append('trip_features') -%}
    {%- endif -%}
    {#- Check every audit table before touching anything: each must be this build's. -#}
    {%- for mart in marts -%}
        {%- set audit = athena_lake_glue_parameters(athena_lake_relation(mart, audit=true)) -%}
        {%- set stamp = audit.get(athena_lake_invocation_key()) if audit else none -%}
        {%- if stamp != invocation_id -%}
            {{ exceptions.raise_compiler_error(
                "lake: NOT published — " ~ athena_lake_relation(mart, audit=true) ~ " is "
                ~ ("missing" if not audit else "from build " ~ (stamp or "unknown"))
                ~ ", not this build " ~ invocation_id ~ " (did another build run at the same "
                ~ "time?). Readers still see the last published build; run `dbt build` again"
            ) }}
        {%- endif -%}
    {%- endfor -%}
    {%- for mart in marts -%}
        {%- set audit = athena_lake_relation(mart, audit=true) -%}
        {%- set published = athena_lake_relation(mart) -%}
        {%- if adapter.get_glue_table(published) -%}
            {#- One Glue UpdateTable: the published name now reads the audited metadata. -#}
            {%- do adapter.swap_table(audit, published) -%}
            {%- do adapter.delete_from_glue_catalog(audit) -%}
        {%- else -%}
            {%- do run_query(athena_lake_rename_sql(audit, published)) -%}
            {%- do athena_lake_stamp(published) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ log('lake: published build ' ~ invocation_id ~ ' — ' ~ marts | join(', '), info=True) }}
    {{ return('') }}
{%- endmacro %}
