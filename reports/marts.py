"""Read one published build of the marts with DuckDB: its snapshots' Parquet files, nothing else.

A report pins the build once (`open_build`) and reads every mart through it, so all its numbers
come from the same `dbt build` whatever is published meanwhile. Files in a mart's folder that
the build's snapshot does not list (older builds, failed or killed builds) are never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb
from pyiceberg.table import Table

from lakehouse.builds import PinnedBuild, parse_as_of, pin_build
from lakehouse.catalog import LakeError, local_path
from training.lake import FEATURES, LABEL, SPLITS

# The label first, then the 8 features: every column whose distribution the reports show.
COLUMNS = (LABEL, *FEATURES)
__all__ = [
    "COLUMNS",
    "FEATURES",
    "LABEL",
    "SPLITS",
    "LakeError",
    "MissingMarts",
    "as_of_time",
    "connect",
    "open_build",
    "parquet_source",
    "scan",
]


class MissingMarts(LakeError):
    """A mart or split the report needs is not in the lake; the message names the fix."""


def open_build(
    lake: Path | str, snapshot_id: int | None = None, as_of: datetime | None = None
) -> PinnedBuild:
    """The published build a report reads: the current one, or `snapshot_id` / `as_of`'s.

    Raises LakeError naming the fix when the lake, its catalog or a mart is missing.
    """
    return pin_build(f"{str(lake).rstrip('/')}/trip_features", snapshot_id, as_of)


def as_of_time(text: str | None) -> datetime | None:
    """--as-of parsed exactly as training parses it; LakeError naming the format if invalid."""
    if text is None:
        return None
    return parse_as_of(text)


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parquet_source(paths: Sequence[str]) -> str:
    """SQL reading exactly these Parquet files: no folder glob, no `split=` folder column."""
    listed = ", ".join(sql_string(path) for path in paths)
    return f"read_parquet([{listed}], hive_partitioning = false)"


def empty_source(table: Table) -> str:
    """SQL for no rows with `table`'s columns (a build may write no file for an empty mart)."""
    empty = table.schema().as_arrow().empty_table()
    relation = duckdb.from_arrow(empty)
    columns = ", ".join(
        f'cast(null as {kind}) as "{name}"'
        for name, kind in zip(relation.columns, relation.types, strict=True)
    )
    return f"(select {columns} where false)"


def scan(build: PinnedBuild, mart: str) -> str:
    """SQL reading every row of `mart` in `build`."""
    files = build.data_files(mart)
    if not files:
        return empty_source(build.tables[mart])
    return parquet_source([local_path(data_file.uri) for data_file in files])


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (it spills to a temp folder when data are big)."""
    return duckdb.connect(":memory:")
