"""Small synthetic trip_features / feature_stats lakes, published like a dbt build (Iceberg
tables), for the training tests and the training benchmarks.

Several files per split and small row groups (a `Layout`), so sharding across row groups,
files, workers and ranks is exercised. Fares follow `known_fare` plus N(0, NOISE_STD) noise;
with `label="row_id"` the fare is the row's global index, which identifies every row a reader
returns. Not the sample generator (`scripts/raw_generator.py`): these are marts, not raw files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.publish import publish_folders
from training.lake import FEATURES, LABEL

NOISE_STD = 0.5
# Rows per row group, per file, per split.
Layout = Mapping[str, Sequence[Sequence[int]]]


def known_fare(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The function the fixture's fares follow (before noise): a DC-meter-like rule."""
    miles = 69.0 * np.hypot(
        columns["dest_lat"] - columns["origin_lat"],
        0.78 * (columns["dest_lon"] - columns["origin_lon"]),
    )
    rush = np.isin(columns["pickup_hour"], (7, 8, 9, 16, 17, 18))
    return 3.5 + 2.16 * miles + 1.5 * rush + 0.25 * (columns["pickup_year"] - 2015)


def make_trips(first_id: int, n: int, label: str, rng: np.random.Generator) -> pa.Table:
    """`n` trips with ids first_id.. in the trip_features schema (no `split` column)."""
    columns = {
        "origin_lat": rng.uniform(38.82, 38.99, n),
        "origin_lon": rng.uniform(-77.11, -76.92, n),
        "dest_lat": rng.uniform(38.82, 38.99, n),
        "dest_lon": rng.uniform(-77.11, -76.92, n),
        "pickup_year": rng.integers(2015, 2020, n, dtype=np.int32),
        "pickup_month": rng.integers(1, 13, n, dtype=np.int32),
        "pickup_dow": rng.integers(1, 8, n, dtype=np.int32),
        "pickup_hour": rng.integers(0, 24, n, dtype=np.int32),
    }
    ids = np.arange(first_id, first_id + n)
    if label == "row_id":
        fare = ids.astype(np.float64)
    else:
        fare = known_fare(columns) + rng.normal(0.0, NOISE_STD, n)
    keys = [hashlib.md5(str(i).encode()).hexdigest() for i in ids]
    return pa.table({"trip_key": keys, LABEL: fare, **columns})


def write_feature_stats(folder: Path, train: pa.Table) -> None:
    """feature_stats as dbt writes it: one row per feature and the label, train split only."""
    names = [name for name in (*FEATURES, LABEL) if name in train.column_names]
    values = [train.column(name).to_numpy().astype(np.float64) for name in names]
    table = pa.table(
        {
            "feature_name": names,
            "row_count": pa.array([len(v) for v in values], pa.int64()),
            "mean_value": [float(v.mean()) for v in values],
            "std_value": [float(v.std()) for v in values],
            "min_value": [float(v.min()) for v in values],
            "max_value": [float(v.max()) for v in values],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet")


def write_lake(
    lake: Path, layout: Layout, label: str = "fare", seed: int = 0, build: str = "build-1"
) -> Path:
    """Write trip_features (files per split, one row group per entry of `layout`) and
    feature_stats as Parquet and publish them as build `build` of the lake at `lake`.

    Returns the trip_features location (what `--data` takes). Calling it again with another
    `build` (and seed) publishes a second build of the same lake. The catalog is the default
    one, `catalog.db` in `lake`'s parent folder: give every lake a folder of its own.
    """
    rng = np.random.default_rng(seed)
    next_id = 0
    train_tables = []
    features_folder = lake / "trip_features" / "data" / build
    for split, files in layout.items():
        directory = features_folder / f"split={split}"
        directory.mkdir(parents=True, exist_ok=True)
        for i, row_groups in enumerate(files):
            tables = []
            for rows in row_groups:
                trips = make_trips(next_id, rows, label, rng)
                tables.append(trips.append_column("split", pa.array([split] * rows)))
                next_id += rows
            with pq.ParquetWriter(directory / f"part-{i}.parquet", tables[0].schema) as writer:
                for table in tables:
                    writer.write_table(table)  # one row group per table
            if split == "train":
                train_tables.extend(tables)
    stats_folder = lake / "feature_stats" / "data" / build
    write_feature_stats(stats_folder, pa.concat_tables(train_tables))
    publish_folders(
        str(lake),
        build,
        {"trip_features": str(features_folder), "feature_stats": str(stats_folder)},
        partition_by={"trip_features": "split"},
    )
    return lake / "trip_features"
