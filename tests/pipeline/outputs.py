"""Read the marts the way their consumers do: Parquet only, no database."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds


def read_mart(lake: Path, name: str) -> list[dict]:
    partitioning = "hive" if name == "trip_features" else None
    dataset = ds.dataset(lake / name, format="parquet", partitioning=partitioning)
    return dataset.to_table().to_pylist()
