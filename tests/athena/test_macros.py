"""Known answers for every Athena macro rendering, and what that SQL computes.

The rendered Athena SQL is checked twice: as text (known answers), and by meaning: sqlglot
translates it from Athena's dialect to DuckDB's, DuckDB evaluates it on hostile inputs, and the
results must equal the docs/design.md oracle (tests/pipeline/oracle.py), which shares no code with
the SQL. The translation is sqlglot's model of Trino, so this checks our use of the functions,
not Trino itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb
import pytest
import sqlglot

from tests.athena.conftest import OfflineDbt
from tests.pipeline.oracle import HEADER, parse_number, parse_timestamp

NUMBER = r"[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?"
TIMESTAMP = r"[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}"
TRIMMED = "trim(both ' ' from x)"

KNOWN_ANSWERS = {
    "split_line": "split(raw_line, '|')",
    "array_length": "cardinality(raw_fields)",
    "array_element": "element_at(raw_fields, 27)",
    "matches_pattern": r"regexp_like(x, '^(?:[0-9]+)\z')",
    "try_cast_number": (
        f"case when regexp_like({TRIMMED}, '^(?:{NUMBER})\\z') "
        f"then try_cast({TRIMMED} as double) end"
    ),
    "parse_trip_timestamp": (
        f"case when regexp_like({TRIMMED}, '^(?:{TIMESTAMP})\\z') "
        f"then try(date_parse({TRIMMED}, '%m/%d/%Y %H:%i')) end"
    ),
    "iso_day_of_week": "day_of_week(ts)",
    "md5_hex": "lower(to_hex(md5(to_utf8(raw_line))))",
    "split_bucket": "(from_base(substr(trip_key, 1, 15), 16) % 10000)",
    # The lake hooks call Glue through dbt-athena and render no SQL; `dbt compile` runs none.
    "begin_lake_build": "",
    "stage_to_lake": "",
    "publish_lake": "",
    "lake_first_publish": (
        "alter table `dc_taxi_audit`.`trip_features` rename to `dc_taxi`.`trip_features`"
    ),
    "lake_audit_schema": "dc_taxi_audit",
    # Runs its DDL itself and renders nothing; `dbt compile` only checks the settings.
    "declare_raw_source": "",
    # fare_predictions (written by training.predict) as an empty Iceberg table until it exists.
    "declare_lake_sources": (
        "create table if not exists `dc_taxi`.`fare_predictions` ( trip_key string, "
        "split string, predicted_fare double, model_name string, model_version string, "
        "lake_snapshot_id bigint ) partitioned by (model_name, model_version) "
        "location 's3://dc-taxi-offline/lake/fare_predictions' tblproperties ('table_type' = "
        "'ICEBERG', 'format' = 'parquet', 'write_compression' = 'zstd')"
    ),
    "raw_schema": "create schema if not exists `dc_taxi_raw`",
    "raw_lines_table": (
        "create external table `dc_taxi_raw`.`trip_lines_text` ( raw_line string ) "
        "row format serde 'org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe' "
        "with serdeproperties ( 'field.delim' = '\\001', "
        "'serialization.last.column.takes.rest' = 'true', "
        "'serialization.null.format' = '' ) "
        "stored as textfile location 's3://dc-taxi/raw/'"
    ),
    "raw_source_view": (
        'create or replace view "awsdatacatalog"."dc_taxi_raw"."trip_lines" as '
        'with lines as ( select "$path" as object_path, '
        "regexp_extract(\"$path\", '[^/]*$') as source_file, raw_line "
        'from "awsdatacatalog"."dc_taxi_raw"."trip_lines_text" ) '
        "select source_file, cast(null as bigint) as line_number, raw_line from lines where "
        "object_path = 's3://dc-taxi/it''s/' || source_file "
        "and regexp_like(source_file, '^taxi_.*[.]txt$')"
    ),
}


def _normalised(sql: str) -> str:
    return " ".join(sql.split())


@pytest.mark.parametrize("name", sorted(KNOWN_ANSWERS))
def test_athena_rendering_known_answer(athena_macros, name):
    assert _normalised(athena_macros[name]) == KNOWN_ANSWERS[name]


@pytest.mark.parametrize("name", sorted(KNOWN_ANSWERS))
def test_athena_rendering_parses(athena_macros, name):
    sql = athena_macros[name]
    if sql:
        assert sqlglot.parse_one(sql, read="athena") is not None


def _evaluate(expression: str, column: str, values: list) -> list:
    """Evaluate an Athena expression over values (one column), via sqlglot + DuckDB."""
    rows = ", ".join(f"({sqlglot.exp.convert(value).sql('athena')})" for value in values)
    athena = f"select {expression} from (values {rows}) as t({column})"
    translated = sqlglot.transpile(athena, read="athena", write="duckdb")[0]
    return [row[0] for row in duckdb.sql(translated).fetchall()]


HOSTILE_NUMBERS = [
    "12.50",
    " 12.50 ",
    "1e2",
    "1E-2",
    ".5",
    "12.",
    "+1.5",
    "-2064.71",
    "0",
    "",
    " ",
    "NULL",
    "N/A",
    "NaN",
    "inf",
    "Infinity",
    "0x1A",
    "1,5",
    "12..5",
    "1e",
    "--1",
    "\t12.5",
    "12.5\t",
    "12.5\r",
    "\u00a012.5",
    "1 2",
    "745557.28",
]


def test_try_cast_number_matches_the_oracle(athena_macros):
    actual = _evaluate(athena_macros["try_cast_number"], "x", HOSTILE_NUMBERS)
    assert actual == [parse_number(value) for value in HOSTILE_NUMBERS]


HOSTILE_TIMESTAMPS = [
    "03/07/2016 18:00",
    " 03/07/2016 18:00 ",
    "12/31/2019 23:59",
    "01/01/2015 00:00",
    "02/29/2016 10:00",
    "02/29/2015 10:00",
    "02/30/2016 10:00",
    "13/01/2016 10:00",
    "31/01/2016 18:00",
    "12/31/2019 24:00",
    "12/31/2019 23:60",
    "1/5/2016 3:00",
    "03/07/2016 18:00:00",
    "2016-03-07 18:00",
    "\t03/07/2016 18:00",
    "03/07/2016 18:00\r",
    "",
    "NULL",
]


def test_parse_trip_timestamp_matches_the_oracle(athena_macros):
    actual = _evaluate(athena_macros["parse_trip_timestamp"], "x", HOSTILE_TIMESTAMPS)
    assert actual == [parse_timestamp(value) for value in HOSTILE_TIMESTAMPS]


def test_iso_day_of_week_is_monday_one_to_sunday_seven(athena_macros):
    days = [dt.datetime(2016, 3, 7, 18) + dt.timedelta(days=n) for n in range(14)]
    actual = _evaluate(athena_macros["iso_day_of_week"], "ts", days)
    assert actual == [day.isoweekday() for day in days]


def test_md5_hex_is_the_trip_key(athena_macros):
    lines = ["", "a|b", HEADER, "1001|Yellow Cab|12.50|Ünïcödé|€"]
    actual = _evaluate(athena_macros["md5_hex"], "raw_line", lines)
    assert actual == [hashlib.md5(line.encode("utf-8")).hexdigest() for line in lines]


def test_splitting_keeps_every_field_and_counts_them(athena_macros):
    lines = ["", "a|b", '"a|b"|c', "|".join(str(n) for n in range(30)), "x||y|"]
    fields = athena_macros["split_line"]
    count = athena_macros["array_length"].replace("raw_fields", fields)
    field_27 = athena_macros["array_element"].replace("raw_fields", fields)
    split = [line.split("|") for line in lines]
    assert _evaluate(count, "raw_line", lines) == [len(parts) for parts in split]
    assert _evaluate(field_27, "raw_line", lines) == [
        parts[26] if len(parts) >= 27 else None for parts in split
    ]


def test_raw_source_view_reads_only_taxi_files_directly_under_the_prefix(athena_macros):
    view = sqlglot.parse_one(athena_macros["raw_source_view"], read="athena").expression
    for table in view.find_all(sqlglot.exp.Table):
        if table.name == "trip_lines_text":
            table.replace(sqlglot.exp.to_table("trip_lines_text"))
    paths = [
        "s3://dc-taxi/it's/taxi_2015_01.txt",
        "s3://dc-taxi/it's/taxi_2019_06.txt",
        "s3://dc-taxi/it's/README.txt",
        "s3://dc-taxi/it's/taxi_2015_01.txt.bak",
        "s3://dc-taxi/it's/old/taxi_2015_01.txt",
        "s3://dc-taxi/other/taxi_2015_01.txt",
    ]
    connection = duckdb.connect()
    connection.execute('create table trip_lines_text ("$path" varchar, raw_line varchar)')
    connection.executemany(
        "insert into trip_lines_text values (?, ?)", [(path, f"line of {path}") for path in paths]
    )
    rows = connection.sql(view.sql("duckdb")).fetchall()
    assert sorted(rows) == [  # Athena cannot number the lines of a file: line_number is NULL
        ("taxi_2015_01.txt", None, "line of s3://dc-taxi/it's/taxi_2015_01.txt"),
        ("taxi_2019_06.txt", None, "line of s3://dc-taxi/it's/taxi_2019_06.txt"),
    ]


OVERLAP_CASES = [
    # (raw prefix, output location, is a root of table folders, overlaps?)
    ("s3://b/raw", "s3://b/", True, True),
    ("s3://b/raw", "s3://b/raw", True, True),
    ("s3://b/raw/", "s3://b/raw/lake", True, True),
    ("s3://b/raw", "s3a://b/raw/", True, True),
    ("s3://b/raw", "s3://b/raw-lake", True, False),
    ("s3://b/raw", "s3://c/raw", True, False),
    ("s3://b/raw", "s3://b/lake/raw", True, False),
    # An exact table location is deleted as a bare key prefix: `ra` deletes `raw/...` too.
    ("s3://b/raw", "s3://b/ra", False, True),
    ("s3://b/raw", "s3://b/rawdata", False, False),
]


def test_overlap_rules(tmp_path):
    call = "{{{{ athena_overlapping_location('{}', [('{}', 'where', {})]) }}}}"
    snippets = {
        f"case{n}": call.format(raw, location, str(root).lower())
        for n, (raw, location, root, _) in enumerate(OVERLAP_CASES)
    }
    rendered = OfflineDbt(tmp_path).render(snippets)
    actual = [rendered[f"case{n}"] != "None" for n in range(len(OVERLAP_CASES))]
    assert actual == [overlaps for *_, overlaps in OVERLAP_CASES]
