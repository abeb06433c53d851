"""How the reports read a build's files: exactly the listed files, and empty marts as no rows."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

from reports.marts import connect, empty_source, parquet_source


def test_parquet_source_reads_only_the_listed_files(tmp_path):
    folder = tmp_path / "it's" / "split=train"  # a quote to escape, a hive folder to ignore
    folder.mkdir(parents=True)
    for name, rows in (("listed.parquet", 3), ("stray.parquet", 5)):
        pq.write_table(pa.table({"fare_amount": [1.0] * rows}), folder / name)
    source = parquet_source([str(folder / "listed.parquet")])
    assert connect().execute(f"select count(*) from {source}").fetchone() == (3,)
    columns = [row[0] for row in connect().execute(f"describe select * from {source}").fetchall()]
    assert columns == ["fare_amount"]  # no `split` column from the folder name


def test_a_mart_without_data_files_reads_as_no_rows_with_its_columns():
    schema = Schema(
        NestedField(1, "rejection_reason", StringType(), required=False),
        NestedField(2, "row_count", LongType(), required=False),
        NestedField(3, "mean_value", DoubleType(), required=False),
    )
    source = empty_source(SimpleNamespace(schema=lambda: schema))
    con = connect()
    assert con.execute(f"select count(*) from {source}").fetchone() == (0,)
    described = con.execute(f"describe select * from {source}").fetchall()
    assert [(name, kind) for name, kind, *_ in described] == [
        ("rejection_reason", "VARCHAR"),
        ("row_count", "BIGINT"),
        ("mean_value", "DOUBLE"),
    ]
    by_reason = f"select rejection_reason, count(*) from {source} group by all"
    assert con.execute(by_reason).fetchall() == []
