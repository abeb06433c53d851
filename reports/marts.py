"""Read the dbt marts straight from their Parquet files with DuckDB: no warehouse needed."""

from __future__ import annotations

from pathlib import Path

import duckdb

from training.lake import FEATURES, LABEL, SPLITS

# The label first, then the 8 features: every column whose distribution the reports show.
COLUMNS = (LABEL, *FEATURES)
__all__ = ["COLUMNS", "FEATURES", "LABEL", "SPLITS", "MissingMarts", "connect", "scan"]


class MissingMarts(RuntimeError):
    """A mart has no Parquet files; the message names the folder and the fix."""


def require_parquet(folder: Path) -> None:
    """Fail naming the fix when `folder` holds no Parquet file (at any depth)."""
    if not folder.is_dir() or next(folder.rglob("*.parquet"), None) is None:
        raise MissingMarts(f"no Parquet files under {folder} — run `dbt build` first")


def scan(folder: Path) -> str:
    """SQL for reading every Parquet file under `folder`; `split=` folders become a column."""
    require_parquet(folder)
    pattern = str(folder.resolve() / "**" / "*.parquet").replace("'", "''")
    return f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (it spills to a temp folder when data are big)."""
    return duckdb.connect(":memory:")
