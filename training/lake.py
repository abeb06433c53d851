"""What training reads from the lake: one pinned build's files, the trip_features schema, stats.

A run pins one published build (`lakehouse.builds.pin_build`) and reads only its snapshots'
Parquet files. Everything here works from Iceberg metadata, Parquet footers or tiny tables, so
every DDP rank and DataLoader worker can call it and get the same answer without talking to
the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lakehouse.builds import PinnedBuild
from lakehouse.catalog import LakeError, filesystem_of
from lakehouse.publish import list_data_files

FEATURES = (
    "origin_lat",
    "origin_lon",
    "dest_lat",
    "dest_lon",
    "pickup_year",
    "pickup_month",
    "pickup_dow",
    "pickup_hour",
)
LABEL = "fare_amount"
KEY = "trip_key"
# `split` is the hive partition directory; a writer that also stores it in the files is fine.
# So is `lake_source_file`, the raw file the lake keeps rows by: a folder of the DuckDB lake, a
# column of Athena's tables (dbt_project/models/marts/trip_features.yml).
EXPECTED_COLUMNS = frozenset((KEY, LABEL, *FEATURES))
TOLERATED_COLUMNS = frozenset(("split", "lake_source_file"))
SPLITS = ("train", "validation", "test")


__all__ = ["LakeError"]


@dataclass(frozen=True)
class ParquetPart:
    """One Parquet file and the row count of each of its row groups."""

    path: str
    row_group_rows: tuple[int, ...]


@dataclass(frozen=True)
class SplitFiles:
    """The Parquet files of one split of trip_features, with row counts from their footers."""

    uri: str
    filesystem: pafs.FileSystem
    parts: tuple[ParquetPart, ...]

    @property
    def num_rows(self) -> int:
        return sum(sum(part.row_group_rows) for part in self.parts)

    def row_groups(self) -> list[tuple[int, int, int]]:
        """(part index, row group index, rows) for every row group, in file order."""
        return [
            (i, j, rows)
            for i, part in enumerate(self.parts)
            for j, rows in enumerate(part.row_group_rows)
        ]


@dataclass(frozen=True)
class FeatureStats:
    """Train-split mean and population std of the 8 features (in FEATURES order) and the label."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_mean: float
    label_std: float

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """float64 mean and std vectors, in FEATURES order."""
        return np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)


def check_columns(schema: pa.Schema, where: str) -> None:
    """Fail naming every missing or unexpected column, or a non-numeric feature or label."""
    names = set(schema.names)
    missing = sorted(EXPECTED_COLUMNS - names)
    extra = sorted(names - EXPECTED_COLUMNS - TOLERATED_COLUMNS)
    problems = []
    if missing:
        problems.append(f"missing columns {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected columns {', '.join(extra)}")
    for name in (LABEL, *FEATURES):
        if name in names:
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                problems.append(f"column {name} is {kind}, expected a number")
    if problems:
        raise LakeError(
            f"{where} does not match the trip_features contract: {'; '.join(problems)}"
            " — rebuild it with `dbt build`"
        )


def split_files_of(uris: list[str], where: str) -> SplitFiles:
    """Parquet files (URIs) with their row-group sizes, read from the footers; schema checked."""
    parts = []
    filesystem = None
    for uri in uris:
        filesystem, path = filesystem_of(uri)
        with filesystem.open_input_file(path) as handle:
            metadata = pq.ParquetFile(handle).metadata
        check_columns(metadata.schema.to_arrow_schema(), uri)
        rows = tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
        parts.append(ParquetPart(path=path, row_group_rows=rows))
    if filesystem is None:
        raise LakeError(f"no Parquet files in {where} — run `dbt build` first")
    return SplitFiles(uri=where, filesystem=filesystem, parts=tuple(parts))


def discover_split(build: PinnedBuild, split: str) -> SplitFiles:
    """The files of one split of trip_features in the pinned build."""
    files = build.data_files("trip_features", split)
    where = f"{build.lake_root}/trip_features@{build.snapshot_id} split={split}"
    if not files:
        raise LakeError(f"{where} has no rows — check the dbt split fractions")
    return split_files_of([f.uri for f in files], where)


def folder_split(data_uri: str, split: str) -> SplitFiles:
    """One split of a plain Parquet folder `<data_uri>/split=<name>/` (no catalog, no pinning).

    Only for comparing the lake against plain Parquet (benchmarks); runs read `discover_split`.
    """
    folder = f"{data_uri.rstrip('/')}/split={split}"
    return split_files_of(list_data_files(folder), folder)


def load_feature_stats(build: PinnedBuild) -> FeatureStats:
    """Read feature_stats of the pinned build (one row per column, on the train split)."""
    tables = []
    columns = ["feature_name", "mean_value", "std_value"]
    for data_file in build.data_files("feature_stats"):
        filesystem, path = filesystem_of(data_file.uri)
        with filesystem.open_input_file(path) as handle:
            tables.append(pq.read_table(handle, columns=columns))
    uri = f"{build.lake_root}/feature_stats@{build.snapshots['feature_stats']}"
    if not tables:
        raise LakeError(f"{uri} is empty — rebuild it with `dbt build`")
    table = pa.concat_tables(tables)
    names = table.column("feature_name").to_pylist()
    means = pc.cast(table.column("mean_value"), pa.float64()).to_pylist()
    stds = pc.cast(table.column("std_value"), pa.float64()).to_pylist()
    by_name = {name: (mean, std) for name, mean, std in zip(names, means, stds, strict=True)}
    missing = [name for name in (*FEATURES, LABEL) if by_name.get(name, (None,))[0] is None]
    if missing:
        raise LakeError(
            f"feature_stats under {uri} has no statistics for {', '.join(missing)}"
            " — rebuild it with `dbt build`"
        )

    def usable_std(name: str) -> float:
        # A constant feature (one pickup year in a small sample) has std 0: leave it unscaled.
        std = by_name[name][1]
        return std if std and std > 0 else 1.0

    return FeatureStats(
        mean=tuple(by_name[name][0] for name in FEATURES),
        std=tuple(usable_std(name) for name in FEATURES),
        label_mean=by_name[LABEL][0],
        label_std=usable_std(LABEL),
    )


def head_features(files: SplitFiles, rows: int = 5) -> np.ndarray:
    """The first `rows` raw feature rows of a split (float64 [rows, 8]), e.g. an input example."""
    part = files.parts[0]
    with files.filesystem.open_input_file(part.path) as handle:
        table = pq.ParquetFile(handle).read_row_group(0, columns=list(FEATURES)).slice(0, rows)
    return np.column_stack([table.column(name).to_numpy() for name in FEATURES]).astype(np.float64)
