{#- Where the raw lines are declared: `<target schema>_raw.trip_lines`. -#}
{% macro raw_source_relation() -%}
    {{ return(api.Relation.create(
        database=target.database,
        schema=target.schema ~ '_raw',
        identifier='trip_lines',
    )) }}
{%- endmacro %}

{#- on-run-start: declare the raw source over `raw_path` so every raw line is read whole, as
    text, with the file it came from. Splitting happens in staging, in SQL, so a line with the
    wrong number of fields is quarantined instead of padded or truncated by the reader.
    Its first act drops the previous build's raw source, so a build whose hook fails can never
    read old raw lines: dbt skips every node (`skip_nodes_if_on_run_start_fails`), and the
    staging model's guard `assert_raw_source_declared` stops it even without that flag. -#}
{% macro declare_raw_source() -%}
    {{ return(adapter.dispatch('declare_raw_source', 'dc_taxi')()) }}
{%- endmacro %}

{% macro default__declare_raw_source() -%}
    {{ adapter_not_implemented('declare_raw_source') }}
{%- endmacro %}

{#- Staging's pre-hook: the raw source must be this build's, or nothing is built. -#}
{% macro assert_raw_source_declared() -%}
    {%- set relation = raw_source_relation() -%}
    {%- if execute and not adapter.get_relation(
        database=relation.database, schema=relation.schema, identifier=relation.identifier
    ) -%}
        {{ exceptions.raise_compiler_error(
            "the on-run-start hook did not declare the raw source " ~ relation
            ~ " — see its error above; nothing was built"
        ) }}
    {%- endif -%}
{%- endmacro %}

{#- The raw_path var as a DuckDB folder, without a trailing slash. DuckDB's file glob would
    read `*`, `?`, `[` or `\` in it as a pattern, so such a name is refused, not matched. -#}
{% macro duckdb_raw_folder() -%}
    {%- set raw_path = (var('raw_path') | string).strip().rstrip('/') -%}
    {%- if not raw_path or modules.re.search('[*?\\[\\\\]', raw_path) -%}
        {{ exceptions.raise_compiler_error(
            "the raw_path var must name a folder without `*`, `?`, `[` or `\\` (DuckDB reads "
            ~ "them as a file pattern), got '" ~ raw_path ~ "' — rename the folder or link to "
            ~ "it, and pass --vars '{raw_path: <folder>}'"
        ) }}
    {%- endif -%}
    {{ return(raw_path) }}
{%- endmacro %}

{#- Problems that would lose a month silently, one line each naming the file and the fix: an
    empty (0-byte) file, and a name that is not `taxi_YYYY_MM.txt` with a real month (such a
    file would otherwise be read as one). `files` are (file name, size in bytes or none). -#}
{% macro raw_file_problems(files, raw_folder) -%}
    {%- set problems = [] -%}
    {%- for name, size in files -%}
        {%- if not modules.re.fullmatch('taxi_[0-9]{4}_(0[1-9]|1[0-2])[.]txt', name) -%}
            {%- do problems.append(
                "raw file '" ~ name ~ "' is not named taxi_YYYY_MM.txt with a real month — "
                ~ "rename it, or move it out of " ~ raw_folder
            ) -%}
        {%- elif size == 0 -%}
            {%- do problems.append(
                "raw file '" ~ name ~ "' is empty (0 bytes): a month of zero rows is data loss, "
                ~ "not data — restore it from the source, or delete it if the month is not wanted"
            ) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(problems) }}
{%- endmacro %}

{#- Raises one error listing every problem found, if any. -#}
{% macro raise_raw_file_problems(problems) -%}
    {%- if problems -%}
        {{ exceptions.raise_compiler_error(problems | join('\n')) }}
    {%- endif -%}
{%- endmacro %}

{#- The files are read whole (read_blob) and split on `\n` only, in SQL: DuckDB's CSV reader
    takes a lone `\r` as a line break, stops at a NUL, an over-long line or a mixed line ending,
    and with strict_mode=false silently cuts a line at a NUL. Here every line is kept as its
    bytes (a `\r` before the `\n` too: staging removes it, as on Athena); a file that is not
    valid UTF-8 is split line by line, and a line that does not decode reads with each byte
    >= 0x80 as U+FFFD, so staging quarantines it. An empty line reads as NULL, as on Athena. -#}
{% macro duckdb__declare_raw_source() -%}
    {%- set relation = raw_source_relation() -%}
    {#- Only where dbt runs the SQL this renders: the hooks of build, run, test, ... -#}
    {%- if execute and flags.WHICH not in ['compile', 'show', 'docs', 'list', 'parse',
        'run-operation'] -%}
        {%- do run_query('drop view if exists ' ~ relation) -%}
    {%- endif -%}
    {%- set raw_folder = duckdb_raw_folder() -%}
    {%- set raw_glob = raw_folder ~ '/taxi_*.txt' -%}
    {%- if execute -%}
        {%- set found = run_query(
            'select parse_filename(filename) as source_file, size from read_blob('
            ~ sql_string(raw_glob) ~ ') order by source_file'
        ) -%}
        {%- set problems = duckdb_unlisted_raw_files(raw_folder) -%}
        {%- if found.rows | length == 0 and not problems -%}
            {{ exceptions.raise_compiler_error(
                "no raw files matching '" ~ raw_glob ~ "' — generate sample data with "
                ~ "`python -m scripts.generate_raw --out " ~ raw_folder ~ "` or point the "
                ~ "raw_path var at the DC taxi files (--vars '{raw_path: <folder>}')"
            ) }}
        {%- endif -%}
        {%- do raise_raw_file_problems(problems + raw_file_problems(found.rows, raw_folder)) -%}
    {%- endif -%}
    {#- A full build reads every file (the glob); an incremental one only what it must. -#}
    {%- set plan = {'files': none, 'carried': []} -%}
    {%- if execute and flags.WHICH not in ['compile', 'show', 'docs', 'list', 'parse',
        'run-operation'] -%}
        {%- set plan = duckdb_plan_raw_files(relation, raw_folder) -%}
    {%- endif -%}
    create schema if not exists {{ relation.include(identifier=false) }};
    create or replace view {{ relation }} as
    {{ duckdb_raw_lines(raw_glob if plan.files is none else plan.files) }};
    create or replace view {{ carried_keys_relation() }} as
    {{ duckdb_carried_trip_keys(plan.carried) }}
{%- endmacro %}

{#- Every line of the raw files: `files` is a glob, or a list of paths (none: no line). -#}
{% macro duckdb_raw_lines(files) -%}
    {%- if files is not string and files | length == 0 -%}
        select
            cast(null as varchar) as source_file,
            cast(null as bigint) as line_number,
            cast(null as varchar) as raw_line
        where false
    {%- else %}
    with files as (
        select
            parse_filename(filename) as source_file,
            content,
            try(decode(content)) as text
        from read_blob({{ sql_list(files) if files is not string else sql_string(files) }})
    ),
    split_files as (
        select
            source_file,
            case
                when text is not null then string_split(text, chr(10))
                else list_transform(
                    string_split(cast(content as varchar), '\x0A'),
                    lambda line: coalesce(
                        try(decode(cast(line as blob))),
                        decode(cast(
                            regexp_replace(line, '\\x[89A-F][0-9A-F]', '\\xEF\\xBF\\xBD', 'g')
                            as blob
                        ))
                    )
                )
            end as lines
        from files
    ),
    whole_lines as (
        -- A final `\n` ends the last line; it does not start an empty one.
        select
            source_file,
            lines[1:len(lines) - cast(lines[-1] = '' as integer)] as lines
        from split_files
    ),
    lines as (
        -- The line's number in its file (1 = the header) tells identical lines of one file
        -- apart.
        select
            source_file,
            unnest(lines) as raw_line,
            generate_subscripts(lines, 1) as line_number
        from whole_lines
    )
    select
        source_file,
        line_number,
        nullif(raw_line, '') as raw_line
    from lines
    {%- endif -%}
{%- endmacro %}

{#- Entries named `taxi_*.txt` that DuckDB's glob skips without a word: a broken symlink, a
    folder, a file it may not read. Only the dbt-duckdb plugin (Python) can see them; it
    registers `raw_folder_problems(folder)` (one problem per line, '' when none). -#}
{% macro duckdb_unlisted_raw_files(raw_folder) -%}
    {%- set found = run_query('select raw_folder_problems(' ~ sql_string(raw_folder) ~ ')') -%}
    {{ return((found.columns[0].values()[0] or '').splitlines()) }}
{%- endmacro %}

{#- Athena: an external text table over the raw prefix reads each line whole into one string
    column (the last column takes the rest of the line, so no character can split it), and a
    view over it keeps only `taxi_*.txt` directly under the prefix and names each line's file
    from "$path", like DuckDB's parse_filename. Athena runs one statement per query, so the
    macro runs its DDL itself and renders no SQL: `dbt run-operation declare_raw_source`
    declares the source the same way the on-run-start hook does. -#}
{% macro athena__declare_raw_source() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set raw_prefix = athena_raw_prefix() -%}
    {%- do assert_outputs_clear_of_raw(raw_prefix) -%}
    {%- do assert_output_locations_quotable() -%}
    {%- if var('table_type') not in ['hive', 'iceberg'] -%}
        {{ exceptions.raise_compiler_error(
            "the table_type var must be 'hive' or 'iceberg', got '" ~ var('table_type') ~ "'"
        ) }}
    {%- endif -%}
    {#- `dbt compile` renders hooks without running them: check the settings, touch nothing. -#}
    {%- if flags.WHICH in ['compile', 'show', 'docs', 'list', 'parse'] -%}
        {{ return('') }}
    {%- endif -%}
    {%- set relation = raw_source_relation() -%}
    {%- set lines = relation.incorporate(path={'identifier': relation.identifier ~ '_text'}) -%}
    {%- do run_query(athena_create_raw_schema(relation)) -%}
    {#- First the previous build's source goes: if anything below fails, staging finds none. -#}
    {%- do run_query('drop view if exists ' ~ relation) -%}
    {#- SQL DROP of an external Hive table never deletes its files. Never use dbt's
        drop_relation here: on Athena it also deletes the table's S3 data. -#}
    {%- do run_query('drop table if exists ' ~ lines.render_hive()) -%}
    {%- do run_query(athena_create_raw_lines_table(lines, raw_prefix)) -%}
    {#- An incremental build (athena_lake_increment) reads only its new raw files and carries
        the published rows' keys; a full build reads every file and carries none. -#}
    {%- set increment = athena_lake_increment() -%}
    {%- do run_query(athena_create_raw_source_view(
        relation, lines, raw_prefix, increment.files if increment else none
    )) -%}
    {%- do run_query(
        'create or replace view ' ~ carried_keys_relation() ~ ' as '
        ~ (athena_carried_trip_keys() if increment else no_carried_trip_keys())
    ) -%}
    {#- Objects of 0 bytes have no line, so Athena cannot see them (docs/design.md); a name
        that is not a month can be seen, at the price of one scan of the raw files. -#}
    {%- set found = run_query(
        'select source_file from ' ~ relation ~ ' group by source_file order by source_file'
    ) -%}
    {%- if found.rows | length == 0 and not (increment and not increment.files) -%}
        {%- do run_query('drop view if exists ' ~ relation) -%}
        {{ exceptions.raise_compiler_error(
            "no raw files matching '" ~ raw_prefix ~ "/taxi_*.txt' — upload them with "
            ~ "`python -m scripts.upload_raw --src data/raw --dest " ~ raw_prefix ~ "` or "
            ~ "point the raw_path var at the S3 prefix holding the DC taxi files"
        ) }}
    {%- endif -%}
    {%- set files = [] -%}
    {%- for row in found.rows -%}
        {%- do files.append((row[0], none)) -%}
    {%- endfor -%}
    {%- set problems = raw_file_problems(files, raw_prefix) -%}
    {%- if problems -%}
        {%- do run_query('drop view if exists ' ~ relation) -%}
        {%- do raise_raw_file_problems(problems) -%}
    {%- endif -%}
{%- endmacro %}
