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
    builds, even while a publish is half done.
    Incremental builds (planned outside dbt by `python -m lakehouse athena-build`, which passes
    the var `lake_increment`): the marts kept per raw file are incremental models. Before any
    model runs, begin_lake_build() makes each one's audit table a copy of the published table:
    a second Glue entry naming the same Iceberg metadata (a placeholder table, then
    swap_table). Athena's INSERT then commits the new raw files' rows on the audit entry only;
    the published entry keeps naming the metadata readers read until publish swaps it. The
    shared files make one rule absolute: an audit table at the published table's location is
    only ever forgotten in Glue, never dropped (an Iceberg DROP deletes the files). -#}

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

{#- A table's Glue entry, or none if it does not exist. -#}
{% macro athena_lake_glue_table(relation) -%}
    {%- set found = adapter.get_glue_table(relation) -%}
    {{- return(found['Table'] if found else none) -}}
{%- endmacro %}

{#- The Iceberg table location a Glue entry names. -#}
{% macro athena_lake_location(glue_table) -%}
    {{- return(s3_key_prefix(glue_table.get('StorageDescriptor', {}).get('Location', ''))) -}}
{%- endmacro %}

{#- The incremental build `python -m lakehouse athena-build` planned (the var lake_increment:
    mode, the new raw files to read, the build it adds to), checked; none for a full build. A
    file name must be a `taxi_YYYY_MM.txt` and the build an invocation id, so no value of the
    var can reach the SQL as anything but a quoted name. -#}
{% macro athena_lake_increment() -%}
    {%- set plan = var('lake_increment', none) -%}
    {%- if plan is none or plan is string and not plan -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set problems = [] -%}
    {%- if plan is not mapping or plan.get('mode') not in ['full', 'incremental'] -%}
        {%- do problems.append("it must be a mapping with mode 'full' or 'incremental'") -%}
    {%- elif plan.mode == 'incremental' -%}
        {%- if not modules.re.fullmatch(
            '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
            plan.get('published_build', '') | string) -%}
            {%- do problems.append("its published_build must be a dbt invocation id") -%}
        {%- endif -%}
        {%- if plan.get('files') is string or plan.get('files') is not iterable -%}
            {%- do problems.append("its files must be a list of raw file names") -%}
        {%- else -%}
            {%- for name in plan.files if not modules.re.fullmatch(
                'taxi_[0-9]{4}_(0[1-9]|1[0-2])[.]txt', name | string) -%}
                {%- do problems.append("file '" ~ name ~ "' is not a taxi_YYYY_MM.txt name") -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
    {%- if problems -%}
        {{ exceptions.raise_compiler_error(
            "the lake_increment var is not a plan of `python -m lakehouse athena-build`: "
            ~ problems | join('; ') ~ " — let that command pass it, or leave the var out for a "
            ~ "full build"
        ) }}
    {%- endif -%}
    {{ return(plan if plan.mode == 'incremental' else none) }}
{%- endmacro %}

{#- The trip keys an incremental build keeps without reading their raw files: those of the
    published marts that hold one row per raw line (the duplicate rule sees every file). -#}
{% macro athena_carried_trip_keys() -%}
    {%- for mart in lake_trip_key_marts() %}
    select
        trip_key,
        {{ lake_source_file_column() }} as source_file
    from {{ athena_lake_relation(mart) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{%- endmacro %}

{#- An empty Iceberg table at a location of its own, for swap_table to turn into a copy of a
    published mart (Glue only creates a table, swap_table only updates one). -#}
{% macro athena_lake_placeholder_sql(relation, location) -%}
    create table {{ relation.render_hive() }} (placeholder int)
    location {{ sql_string(location) }}
    tblproperties ('table_type' = 'ICEBERG')
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
    {%- set increment = athena_lake_increment() -%}
    {%- if increment and flags.FULL_REFRESH -%}
        {{ exceptions.raise_compiler_error(
            "--full-refresh with an incremental lake_increment plan: run "
            ~ "`python -m lakehouse athena-build --full-refresh` (or leave the var out)"
        ) }}
    {%- endif -%}
    {%- if not lake_hook_runs() -%}
        {{ return('') }}
    {%- endif -%}
    {%- do athena_lake_clear_audit() -%}
    {%- if increment -%}
        {%- do athena_lake_copy_published(increment) -%}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}

{#- Before any model runs, no audit table is left that a model could append to or drop:
    - one at its published table's location shares the published files (a publish killed
      between its swap and forgetting the audit name, or a killed incremental build's copy):
      its name is forgotten in Glue, the files stay; dbt-athena's drop would delete them;
    - another audit table of a mart kept per raw file is a failed build's own table: dropped
      (its own files), so an incremental model never appends to it. The other marts are
      tables dbt-athena replaces itself. -#}
{% macro athena_lake_clear_audit() -%}
    {%- for mart in lake_marts() -%}
        {%- set audit_relation = athena_lake_relation(mart, audit=true) -%}
        {%- set audit = athena_lake_glue_table(audit_relation) -%}
        {%- set published = athena_lake_glue_table(athena_lake_relation(mart)) -%}
        {%- if audit and published
            and athena_lake_location(audit) == athena_lake_location(published) -%}
            {%- do adapter.delete_from_glue_catalog(audit_relation) -%}
            {%- do adapter.cache_dropped(audit_relation) -%}
            {{ log('lake: forgot ' ~ audit_relation ~ ', left over by an interrupted build or '
                ~ 'publish (its files are the published ones)', info=True) }}
        {%- elif audit and mart in lake_marts_by_raw_file() -%}
            {%- do drop_relation(audit_relation) -%}
            {%- do adapter.cache_dropped(audit_relation) -%}
            {{ log('lake: dropped ' ~ audit_relation ~ ', left over by a failed build', info=True) }}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}

{#- An incremental build: each mart kept per raw file starts as a copy of its published
    table (an audit Glue entry naming the same Iceberg metadata), to which its incremental
    model appends the new raw files' rows. Every published mart must still be the build the
    plan adds to. -#}
{% macro athena_lake_copy_published(increment) -%}
    {%- for mart in lake_marts_by_raw_file() -%}
        {%- set published = athena_lake_glue_parameters(athena_lake_relation(mart)) or {} -%}
        {%- set stamp = published.get(athena_lake_invocation_key()) -%}
        {%- if stamp != increment.published_build -%}
            {{ exceptions.raise_compiler_error(
                "lake: the plan adds to build " ~ increment.published_build ~ ", but "
                ~ athena_lake_relation(mart) ~ " is " ~ ("missing" if not published
                else "from build " ~ (stamp or "unknown")) ~ " now (another build published "
                ~ "since) — run `python -m lakehouse athena-build` again to plan on it"
            ) }}
        {%- endif -%}
    {%- endfor -%}
    {%- for mart in lake_marts_by_raw_file() -%}
        {%- set audit = athena_lake_relation(mart, audit=true) -%}
        {%- do run_query(athena_lake_placeholder_sql(
            audit, lake_root() ~ '/' ~ mart ~ '/placeholder-' ~ invocation_id ~ '/'
        )) -%}
        {%- do adapter.swap_table(athena_lake_relation(mart), audit) -%}
        {#- dbt listed the audit database before this hook: without this, the incremental
            model would not see its table and would try to create it. -#}
        {%- do adapter.cache_added(audit) -%}
    {%- endfor -%}
    {{ log('lake: incremental build on ' ~ increment.published_build ~ ': reading '
        ~ increment.files | length ~ ' new raw file(s); ' ~ lake_marts_by_raw_file() | join(', ')
        ~ ' start as copies of the published tables', info=True) }}
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
