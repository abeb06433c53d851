-- The floor of the SQL-pipeline benchmark (bench_sql_pipeline.py, contender `bare_steps`):
-- the steps every contender cannot skip, and nothing else. Read the same raw lines as
-- handwritten_duckdb.sql, key each by its md5, split it on `|`, parse the six fields the
-- features need (a plain cast: no pattern check), and write one Parquet dataset. No rule, no
-- duplicate search, no split, no quarantine, no statistics: its output is not the others' and
-- is not compared; its time is what DuckDB needs for the unavoidable part on this machine.
--
-- ${raw_glob}, ${lake_path} and ${memory_limit} are filled in by the harness.

set memory_limit = '${memory_limit}';
set preserve_insertion_order = false;

copy (
    with fields as (
        select
            parse_filename(filename) as source_file,
            md5(coalesce(line, '')) as trip_key,
            string_split(coalesce(line, ''), '|') as f
        from read_csv(
            '${raw_glob}',
            columns = {'line': 'VARCHAR'},
            delim = chr(0),
            quote = '',
            escape = '',
            header = false,
            auto_detect = false,
            filename = true
        )
        where line is distinct from 'OBJECTID|TRIPTYPE|PROVIDERNAME|FAREAMOUNT|GRATUITYAMOUNT|SURCHARGEAMOUNT|EXTRAFAREAMOUNT|TOLLAMOUNT|TOTALAMOUNT|PAYMENTTYPE|ORIGINCITY|ORIGINSTATE|ORIGINZIP|DESTINATIONCITY|DESTINATIONSTATE|DESTINATIONZIP|MILEAGE|DURATION|ORIGIN_BLOCK_LATITUDE|ORIGIN_BLOCK_LONGITUDE|ORIGIN_BLOCKNAME|DESTINATION_BLOCK_LATITUDE|DESTINATION_BLOCK_LONGITUDE|DESTINATION_BLOCKNAME|AIRPORT|ORIGINDATETIME_TR|DESTINATIONDATETIME_TR'
    )

    select
        trip_key,
        source_file,
        try_cast(f[4] as double) as fare_amount,
        try_cast(f[19] as double) as origin_lat,
        try_cast(f[20] as double) as origin_lon,
        try_cast(f[22] as double) as dest_lat,
        try_cast(f[23] as double) as dest_lon,
        try_strptime(trim(f[26], ' '), '%m/%d/%Y %H:%M') as pickup_at
    from fields
)
to '${lake_path}/bare_steps' (
    format parquet,
    compression zstd,
    file_size_bytes '256MB',
    overwrite true
);
