"""training.lake: the pinned build's files, the trip_features contract, feature_stats."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.builds import pin_build
from lakehouse.publish import publish_folders
from scripts.synthetic_lake import make_trips, write_feature_stats, write_lake
from training.data import TRAINING_MARTS
from training.lake import LakeError, discover_split, folder_split, load_feature_stats


def pinned(data):
    return pin_build(str(data), marts=TRAINING_MARTS)


def test_no_lake_says_run_dbt_build(tmp_path):
    with pytest.raises(LakeError, match=r"no lake catalog at .*catalog.db .* `dbt build` first"):
        pinned(tmp_path / "lake" / "trip_features")
    assert not (tmp_path / "catalog.db").exists()  # a reader creates no catalog
    write_lake(tmp_path / "other" / "lake", {"train": [[3]], "validation": [[3]], "test": [[3]]})
    with pytest.raises(LakeError, match=r"lives at .*other/lake/trip_features, not .*"):
        pinned(tmp_path / "other" / "elsewhere" / "trip_features")


def test_missing_and_unexpected_columns_are_named(tmp_path):
    table = make_trips(0, 10, "fare", np.random.default_rng(0))
    table = table.drop_columns(["pickup_hour", "dest_lat"]).append_column(
        "mileage", pa.array([1.0] * 10)
    )
    folder = tmp_path / "trip_features" / "split=train"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    with pytest.raises(LakeError) as error:
        folder_split(str(tmp_path / "trip_features"), "train")
    message = str(error.value)
    assert "missing columns dest_lat, pickup_hour" in message
    assert "unexpected columns mileage" in message


def test_plain_folders_skip_markers_and_read_files_without_suffix(tmp_path):
    table = make_trips(0, 10, "fare", np.random.default_rng(0))
    folder = tmp_path / "trip_features" / "split=train"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "20261126_123456_00001_abcde_0f1e2d")
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-1.crc").write_text("not parquet")
    files = folder_split(str(tmp_path / "trip_features"), "train")
    assert files.num_rows == 10
    assert len(files.parts) == 1


def test_row_counts_come_from_the_pinned_snapshot_files(tmp_path):
    data = write_lake(
        tmp_path / "lake", {"train": [[5, 7], [3]], "validation": [[4]], "test": [[2]]}
    )
    build = pinned(data)
    files = discover_split(build, "train")
    assert files.num_rows == 15
    assert sorted(rows for _, _, rows in files.row_groups()) == [3, 5, 7]
    assert discover_split(build, "test").num_rows == 2


def publish_stats(lake, table, build):
    """A lake whose feature_stats are computed from `table` (trip_features: 3 tiny splits)."""
    write_lake(lake, {"train": [[5]], "validation": [[5]], "test": [[5]]}, build=build)
    folder = lake / "feature_stats" / "data" / f"{build}-stats"
    write_feature_stats(folder, table)
    # Republish trip_features' files with the new stats, as one build.
    publish_folders(
        str(lake),
        f"{build}-stats",
        {
            "trip_features": str(lake / "trip_features" / "data" / build),
            "feature_stats": str(folder),
        },
        partition_by={"trip_features": "split"},
    )
    return pinned(lake / "trip_features")


def test_feature_stats_must_cover_every_feature(tmp_path):
    table = make_trips(0, 50, "fare", np.random.default_rng(0))
    stats = load_feature_stats(publish_stats(tmp_path / "lake", table, "full"))
    assert len(stats.mean) == 8 and stats.label_mean > 0
    partial = {name: table.column(name) for name in table.column_names if name != "pickup_dow"}
    with pytest.raises(LakeError, match="no statistics for pickup_dow"):
        load_feature_stats(
            publish_stats(tmp_path / "partial" / "lake", pa.table(partial), "partial")
        )


def test_constant_feature_is_left_unscaled(tmp_path):
    table = make_trips(0, 50, "fare", np.random.default_rng(0))
    index = table.schema.get_field_index("pickup_year")
    table = table.set_column(index, "pickup_year", pa.array([2017] * 50, pa.int32()))
    stats = load_feature_stats(publish_stats(tmp_path / "lake", table, "constant"))
    assert stats.std[4] == 1.0 and stats.mean[4] == 2017
