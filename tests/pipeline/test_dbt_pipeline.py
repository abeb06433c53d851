"""`dbt build` on generated raw data, checked row by row against the Python oracle."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from tests.conftest import DbtProject, generate_raw
from tests.pipeline.oracle import FIELDS, evaluate
from tests.pipeline.outputs import read_mart

pytestmark = pytest.mark.slow

FEATURES = [
    "fare_amount",
    "origin_lat",
    "origin_lon",
    "dest_lat",
    "dest_lon",
    "pickup_year",
    "pickup_month",
    "pickup_dow",
    "pickup_hour",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory, request):
    project = DbtProject(
        tmp_path_factory.mktemp("pipeline"), request.config.getoption("--dbt-target")
    )
    rows = request.config.getoption("--pipeline-rows")
    generate_raw(project.raw, rows=rows, months="2015-01:2015-06")
    result = project.build()
    return project, evaluate(project.raw), result


def test_build_runs_every_vacuum_test_without_error(built):
    _, _, result = built
    assert "ERROR=0" in result.output
    assert "SKIP=0" in result.output


def test_raw_rows_reconcile_exactly(built):
    project, oracle, _ = built
    features = read_mart(project.lake, "trip_features")
    rejected = read_mart(project.lake, "trips_rejected")
    summary = read_mart(project.lake, "data_quality_summary")
    assert len(features) + len(rejected) == len(oracle)
    assert sum(row["row_count"] for row in summary) == len(oracle)
    accepted = sum(row["row_count"] for row in summary if row["outcome"] == "accepted")
    assert accepted == len(features)


def test_every_rejected_row_has_the_oracle_reason(built):
    project, oracle, _ = built
    rejected = read_mart(project.lake, "trips_rejected")
    actual = Counter((r["trip_key"], r["source_file"], r["rejection_reason"]) for r in rejected)
    expected = Counter((o.trip_key, o.source_file, o.reason) for o in oracle if o.reason)
    assert actual == expected
    # Every kind of dirt the generator injects reaches the quarantine.
    reasons = {reason for _, _, reason in actual}
    assert {"duplicate", "invalid_pickup_time", "invalid_fare", "missing_coordinates"} <= reasons
    assert {"fare_out_of_range", "outside_service_area"} <= reasons


def test_rejected_rows_keep_the_raw_text(built):
    project, oracle, _ = built
    by_key = {o.trip_key: o.raw_line for o in oracle}
    for row in read_mart(project.lake, "trips_rejected"):
        assert row["raw_line"] == by_key[row["trip_key"]]
        assert "|".join(row[name.lower()] for name in FIELDS) == row["raw_line"]


def test_every_kept_row_has_the_oracle_split_and_features(built):
    project, oracle, _ = built
    expected = {o.trip_key: (o.split, o.features) for o in oracle if o.reason is None}
    actual = {
        row["trip_key"]: (row["split"], {name: row[name] for name in FEATURES})
        for row in read_mart(project.lake, "trip_features")
    }
    assert actual == expected
    assert {split for split, _ in actual.values()} == {"train", "validation", "test"}


def test_feature_stats_describe_the_train_split_only(built):
    project, oracle, _ = built
    train = [o.features for o in oracle if o.reason is None and o.split == "train"]
    stats = {row["feature_name"]: row for row in read_mart(project.lake, "feature_stats")}
    assert set(stats) == set(FEATURES)
    for name in FEATURES:
        values = np.array([features[name] for features in train], dtype=np.float64)
        assert stats[name]["row_count"] == len(values)
        assert stats[name]["mean_value"] == pytest.approx(values.mean(), rel=1e-9)
        assert stats[name]["std_value"] == pytest.approx(values.std(), rel=1e-9)
        assert stats[name]["min_value"] == values.min()
        assert stats[name]["max_value"] == values.max()


def test_a_second_build_assigns_identical_splits(built, tmp_path):
    project, _, _ = built
    first = _splits(project)
    rerun = DbtProject(tmp_path, project.target)
    rerun.build(raw=project.raw)
    assert _splits(rerun) == first
    # The rerun into the same lake leaves no stale files behind either.
    project.build()
    assert _splits(project) == first


def test_adding_a_month_moves_no_existing_row(built, tmp_path):
    project, _, _ = built
    grown = DbtProject(tmp_path, project.target)
    shutil.copytree(project.raw, grown.raw)
    generate_raw(grown.raw, rows=10_000, months="2015-07:2015-07")
    grown.build()
    before, after = _splits(project), _splits(grown)
    assert len(after) > len(before)
    assert {key: after[key] for key in before} == before


def _splits(project: DbtProject) -> dict[str, str]:
    return {row["trip_key"]: row["split"] for row in read_mart(project.lake, "trip_features")}


def test_docs_generate_documents_every_model_and_column(built):
    project, _, _ = built
    result = project.dbt("docs", "generate")
    assert result.returncode == 0, result.output[-3000:]
    target = project.root / "dbt_target"
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    models = {
        node_id: node
        for node_id, node in manifest["nodes"].items()
        if node["resource_type"] == "model"
    }
    assert len(models) == 9  # staging 3, intermediate 1, marts 5
    for node_id, node in models.items():
        assert node["description"].strip(), f"{node_id} has no description"
        built_columns = {name.lower() for name in catalog["nodes"][node_id]["columns"]}
        documented = {
            name.lower() for name, column in node["columns"].items() if column["description"]
        }
        assert built_columns <= documented, f"{node_id}: undocumented {built_columns - documented}"
        # The DuckDB lake keeps a mart's raw-file key as the folder of its files, not a column.
        assert documented - built_columns <= {"lake_source_file"}, node_id
