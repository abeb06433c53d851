{#- Write–audit–publish of the lake (docs/design.md, "Lake"): every mart becomes an Iceberg
    table `dc_taxi.<mart>` at `<lake_path>/<mart>`.
    - on-run-start `begin_lake_build()`: records which build is published now (the base).
    - post-hook `stage_to_lake()` of every mart: writes the mart's Parquet files into a folder
      of this build, registers them as a snapshot on the table's `audit-<invocation_id>` branch
      (readers do not see it) and points the dbt relation at exactly those files, so every test
      of the mart reads what would be published.
    - on-run-end `publish_lake(results)`: if every model and test of a whole `dbt build` passed,
      makes all marts' staged snapshots current in one catalog transaction; otherwise publishes
      nothing and says why. A mart partitions its files with `meta: {lake_partition_by: col}`. -#}

{#- The lake root, without a trailing slash. -#}
{% macro lake_root() -%}
    {{- return((var('lake_path') | string).strip().rstrip('/')) -}}
{%- endmacro %}

{#- The marts published to the lake: every model under models/marts. -#}
{% macro lake_marts() -%}
    {%- set marts = [] -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.package_name == project_name
        and node.fqn[1] == 'marts' -%}
        {%- do marts.append(node.name) -%}
    {%- endfor -%}
    {{- return(marts | sort) -}}
{%- endmacro %}

{#- How a mart is materialized (each mart's config() calls this; dbt_project.yml cannot
    call macros). DuckDB: a view over int_trips_validated, re-pointed by the post-hook at the
    files it staged in the lake. Athena: an Iceberg table in the audit database; a mart kept
    per raw file (`per_raw_file`, with `meta.lake_files_by`) is an incremental one, so that an
    incremental build appends the rows of its new raw files to a copy of the published table
    (macros/athena_lake.sql). -#}
{% macro lake_mart_materialization(per_raw_file=false) -%}
    {{ return(adapter.dispatch('lake_mart_materialization', 'dc_taxi')(per_raw_file)) }}
{%- endmacro %}

{% macro default__lake_mart_materialization(per_raw_file) -%}
    {{ adapter_not_implemented('lake_mart_materialization') }}
{%- endmacro %}

{% macro duckdb__lake_mart_materialization(per_raw_file) -%}
    {{ return('view') }}
{%- endmacro %}

{% macro athena__lake_mart_materialization(per_raw_file) -%}
    {{ return('incremental' if per_raw_file else 'table') }}
{%- endmacro %}

{% macro begin_lake_build() -%}
    {{ return(adapter.dispatch('begin_lake_build', 'dc_taxi')()) }}
{%- endmacro %}

{% macro stage_to_lake() -%}
    {{ return(adapter.dispatch('stage_to_lake', 'dc_taxi')()) }}
{%- endmacro %}

{#- Whether a lake hook does its work in this invocation: not while dbt only renders SQL. -#}
{% macro lake_hook_runs() -%}
    {{- return(execute and flags.WHICH not in ['compile', 'show', 'docs', 'list', 'parse']) -}}
{%- endmacro %}

{#- The decision to publish is the same on every engine; only how differs. -#}
{% macro publish_lake(results) -%}
    {%- if not lake_hook_runs() -%}
        {{ return('') }}
    {%- endif -%}
    {%- set blocker = lake_publish_blocker(results) -%}
    {%- if blocker -%}
        {{ log('lake: NOT published — ' ~ blocker ~ '. Readers still see the last published '
            ~ 'build.', info=True) }}
        {{ return('') }}
    {%- endif -%}
    {{ return(adapter.dispatch('publish_lake', 'dc_taxi')(results)) }}
{%- endmacro %}

{% macro default__begin_lake_build() -%}
    {{ exceptions.raise_compiler_error(
        "the lake is not implemented for adapter '" ~ adapter.type() ~ "' (duckdb, athena)"
    ) }}
{%- endmacro %}

{% macro default__stage_to_lake() -%}
    {{ exceptions.raise_compiler_error(
        "the lake is not implemented for adapter '" ~ adapter.type() ~ "' (duckdb, athena)"
    ) }}
{%- endmacro %}

{% macro default__publish_lake(results) -%}
    {{ exceptions.raise_compiler_error(
        "the lake is not implemented for adapter '" ~ adapter.type() ~ "' (duckdb, athena)"
    ) }}
{%- endmacro %}

{#- Why this invocation must not publish, or none. Only a whole `dbt build` publishes: every
    mart staged, every model succeeded, every data and unit test of the project ran and none
    failed or errored (warnings are fine). -#}
{% macro lake_publish_blocker(results) -%}
    {%- if flags.WHICH != 'build' -%}
        {{ return('`dbt ' ~ flags.WHICH ~ '` runs no tests: only `dbt build` publishes') }}
    {%- endif -%}
    {%- if results | length == 0 -%}
        {{ return('nothing ran (did an on-run-start hook fail? see above)') }}
    {%- endif -%}
    {%- set bad = [] -%}
    {%- set ran = [] -%}
    {%- for result in results if result.node.resource_type != 'exposure' -%}
        {#- An exposure only declares a consumer: dbt reports it as `no-op`. -#}
        {%- do ran.append(result.node.unique_id) -%}
        {%- if result.status not in ['success', 'pass', 'warn'] -%}
            {%- do bad.append(result.node.name ~ ' (' ~ result.status ~ ')') -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if bad -%}
        {{ return(bad | length ~ ' node(s) did not pass: ' ~ bad[:5] | join(', ')) }}
    {%- endif -%}
    {%- set missing = [] -%}
    {%- for node in graph.nodes.values()
        if node.resource_type in ['model', 'test', 'unit_test']
        and node.package_name == project_name and node.unique_id not in ran -%}
        {%- do missing.append(node.name) -%}
    {%- endfor -%}
    {%- if missing -%}
        {{ return(missing | length ~ ' model(s)/test(s) were not selected, e.g. '
            ~ missing[:3] | join(', ') ~ ': only a whole `dbt build` publishes') }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{#- DuckDB: the plugin scripts/duckdb_lake_plugin.py does the catalog work in Python
    (lake_begin / lake_stage / lake_publish); DuckDB writes the Parquet files. -#}
{% macro duckdb__begin_lake_build() -%}
    select lake_begin({{ sql_string(lake_root()) }}, {{ sql_string(invocation_id) }})
{%- endmacro %}

{% macro duckdb__stage_to_lake() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set meta = model.config.get('meta', {}) -%}
    {%- set partition_by = meta.get('lake_partition_by') -%}
    {%- set files_by = meta.get('lake_files_by') -%}
    {%- if files_by and files_by not in adapter.get_columns_in_relation(this)
        | map(attribute='name') | list -%}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ " declares meta.lake_files_by '" ~ files_by ~ "' but selects no such "
            ~ "column — add `{{ lake_source_file('source_file') }}` to its select list"
        ) }}
    {%- endif -%}
    {#- Folders: one per raw file (files_by, not stored), then one per partition value (the
        column stays in the files: its copy `lake_partition` names the folder). -#}
    {%- set folders = [] -%}
    {%- if files_by -%}{%- do folders.append(adapter.quote(files_by)) -%}{%- endif -%}
    {%- if partition_by -%}{%- do folders.append('lake_partition') -%}{%- endif -%}
    {%- set folder = lake_root() ~ '/' ~ this.identifier ~ '/data/' ~ invocation_id -%}
    {%- do run_query('select lake_ensure_dir(' ~ sql_string(folder) ~ ')') -%}
    {%- call statement('lake_write') -%}
        copy (
            select
                *{% if partition_by %}, {{ adapter.quote(partition_by) }} as lake_partition{% endif %}
            from {{ this }}
        )
        to {{ sql_string(folder ~ '/mart') }} (
            format parquet,
            compression zstd,
            {%- if folders %}
            partition_by ({{ folders | join(', ') }}),
            write_partition_columns false,
            {%- endif %}
            file_size_bytes '256MB'
        );
        copy (
            select *{% if files_by %} exclude ({{ adapter.quote(files_by) }}){% endif %}
            from {{ this }}
            limit 0
        )
        to {{ sql_string(folder ~ '/_schema.parquet') }} (format parquet)
    {%- endcall -%}
    {%- set staged = run_query(
        'select lake_stage(' ~ sql_string(lake_root()) ~ ', ' ~ sql_string(this.identifier)
        ~ ', ' ~ sql_string(invocation_id) ~ ', ' ~ sql_string(folder ~ '/mart') ~ ', '
        ~ sql_string(folder ~ '/_schema.parquet') ~ ', ' ~ sql_string(partition_by or '')
        ~ ', ' ~ sql_string(files_by or '') ~ ')'
    ) -%}
    {%- set staged = fromjson(staged.columns[0].values()[0]) -%}
    {%- set schema_only = [folder ~ '/_schema.parquet'] -%}
    {#- From here on, the relation the tests read is exactly the staged files ... -#}
    create or replace view {{ this }} as
    select * from read_parquet(
        {{ sql_list(staged['files'] or schema_only) }}, hive_partitioning = false
    );
    {#- ... and the rows this build wrote, which its row-by-row tests read (the others an
        incremental build keeps passed them in the build that wrote them). -#}
    create or replace view {{ lake_rows_of_this_build(this) }} as
    select * from read_parquet({{ sql_list(staged['new'] or schema_only) }}, hive_partitioning = false)
{%- endmacro %}

{#- What ran in this build and how it ended, in dbt's run_results format (run_results.json is
    only written after this hook): recorded in the lake beside the data (build_artifacts.py). -#}
{% macro lake_run_results(results) -%}
    {%- set entries = [] -%}
    {%- for result in results -%}
        {%- do entries.append({
            'unique_id': result.node.unique_id,
            'status': result.status ~ '',
            'failures': result.failures,
            'message': result.message,
            'execution_time': result.execution_time,
        }) -%}
    {%- endfor -%}
    {{- return(tojson({
        'metadata': {
            'dbt_version': dbt_version,
            'generated_at': modules.datetime.datetime.now(modules.pytz.utc).isoformat(),
            'invocation_id': invocation_id,
        },
        'args': {
            'which': flags.WHICH,
            'invocation_command': invocation_args_dict.get('invocation_command'),
        },
        'run_started_at': run_started_at.isoformat(),
        'results': entries,
    })) -}}
{%- endmacro %}

{#- The manifest.json dbt wrote for this invocation. -#}
{% macro lake_manifest_path() -%}
    {%- set project_dir = lake_project_dir() -%}
    {%- set target = invocation_args_dict.get('target_path') or flags.TARGET_PATH or 'target' -%}
    {%- set folder = target if target.startswith('/') else project_dir ~ '/' ~ target -%}
    {{- return(folder ~ '/manifest.json') -}}
{%- endmacro %}

{% macro duckdb__publish_lake(results) -%}
    {%- set recorded = run_query(
        'select lake_record_build(' ~ sql_string(lake_root()) ~ ', ' ~ sql_string(invocation_id)
        ~ ', ' ~ sql_string(lake_run_results(results)) ~ ', ' ~ sql_string(lake_manifest_path())
        ~ ')'
    ) -%}
    {{ log('lake: dbt artifacts of this build in ' ~ recorded.columns[0].values()[0], info=True) }}
    {{ log('lake: publishing build ' ~ invocation_id, info=True) }}
    {%- set published = run_query(
        'select lake_publish(' ~ sql_string(lake_root()) ~ ', ' ~ sql_string(invocation_id)
        ~ ', ' ~ sql_string(tojson(lake_marts())) ~ ')'
    ) -%}
    {{ log('lake: published build ' ~ invocation_id ~ ' — ' ~ published.columns[0].values()[0],
        info=True) }}
{%- endmacro %}
