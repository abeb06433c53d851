"""training.lake: finding the Parquet, checking it against the contract, feature_stats."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.training.conftest import make_trips, write_feature_stats, write_lake
from training.lake import LakeError, discover_split, load_feature_stats, sibling


def test_no_parquet_says_run_dbt_build(tmp_path):
    with pytest.raises(LakeError, match=r"no Parquet files under .*split=train — run `dbt build`"):
        discover_split(str(tmp_path / "trip_features"), "train")


def test_missing_and_unexpected_columns_are_named(tmp_path):
    table = make_trips(0, 10, "fare", np.random.default_rng(0))
    table = table.drop_columns(["pickup_hour", "dest_lat"]).append_column(
        "mileage", pa.array([1.0] * 10)
    )
    folder = tmp_path / "trip_features" / "split=train"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    with pytest.raises(LakeError) as error:
        discover_split(str(tmp_path / "trip_features"), "train")
    message = str(error.value)
    assert "missing columns dest_lat, pickup_hour" in message
    assert "unexpected columns mileage" in message


def test_split_column_inside_files_is_tolerated(tmp_path):
    table = make_trips(0, 10, "fare", np.random.default_rng(0))
    table = table.append_column("split", pa.array(["train"] * 10))
    folder = tmp_path / "trip_features" / "split=train"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    assert discover_split(str(tmp_path / "trip_features"), "train").num_rows == 10


def test_athena_style_files_without_suffix_are_read_and_markers_skipped(tmp_path):
    table = make_trips(0, 10, "fare", np.random.default_rng(0))
    folder = tmp_path / "trip_features" / "split=train"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "20261126_123456_00001_abcde_0f1e2d")
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-1.crc").write_text("not parquet")
    files = discover_split(str(tmp_path / "trip_features"), "train")
    assert files.num_rows == 10
    assert len(files.parts) == 1


def test_row_counts_come_from_the_footers(tmp_path):
    data = write_lake(tmp_path, {"train": [[5, 7], [3]]})
    files = discover_split(str(data), "train")
    assert files.num_rows == 15
    assert [rows for _, _, rows in files.row_groups()] == [5, 7, 3]


def test_feature_stats_must_cover_every_feature(tmp_path):
    write_feature_stats(tmp_path, make_trips(0, 50, "fare", np.random.default_rng(0)))
    stats = load_feature_stats(str(tmp_path / "feature_stats"))
    assert len(stats.mean) == 8 and stats.label_mean > 0
    table = pq.read_table(tmp_path / "feature_stats")
    keep = pa.compute.not_equal(table.column("feature_name"), "pickup_dow")
    pq.write_table(table.filter(keep), tmp_path / "feature_stats" / "part-0.parquet")
    with pytest.raises(LakeError, match="no statistics for pickup_dow"):
        load_feature_stats(str(tmp_path / "feature_stats"))


def test_constant_feature_is_left_unscaled(tmp_path):
    table = make_trips(0, 50, "fare", np.random.default_rng(0))
    index = table.schema.get_field_index("pickup_year")
    table = table.set_column(index, "pickup_year", pa.array([2017] * 50, pa.int32()))
    write_feature_stats(tmp_path, table)
    stats = load_feature_stats(str(tmp_path / "feature_stats"))
    assert stats.std[4] == 1.0 and stats.mean[4] == 2017


def test_sibling_of_local_and_s3_paths(tmp_path):
    assert sibling("s3://bucket/lake/trip_features/", "feature_stats") == (
        "s3://bucket/lake/feature_stats"
    )
    assert sibling(str(tmp_path / "trip_features"), "feature_stats") == str(
        tmp_path / "feature_stats"
    )
