"""The marts read outside dbt have enforced dbt model contracts: a change to their columns or
types fails `dbt build` itself, before anything is published, instead of breaking training."""

from __future__ import annotations

import json
import shutil

import pytest

from scripts.dbt_subprocess import REPO_ROOT
from tests.conftest import generate_raw
from tests.pipeline.outputs import current_build
from training.lake import EXPECTED_COLUMNS, FEATURES, LABEL, TOLERATED_COLUMNS

pytestmark = pytest.mark.slow

PUBLIC_MARTS = ("trip_features", "trips_rejected", "feature_stats", "data_quality_summary")


@pytest.fixture
def small_raw(dbt_project):
    generate_raw(dbt_project.raw, rows=2_000, months="2016-01:2016-02")
    return dbt_project


def _manifest_nodes(project) -> dict:
    result = project.dbt("parse")
    assert result.returncode == 0, result.output[-4000:]
    manifest = json.loads((project.root / "dbt_target" / "manifest.json").read_text())
    return manifest["nodes"]


def test_public_marts_declare_every_column_and_type(dbt_project):
    nodes = _manifest_nodes(dbt_project)
    for name in PUBLIC_MARTS:
        node = nodes[f"model.dc_taxi.{name}"]
        assert node["config"]["contract"]["enforced"] is True, name
        assert node["access"] == "public", name
        assert all(column["data_type"] for column in node["columns"].values()), name
    # The training package's schema is the contract's.
    features = nodes["model.dc_taxi.trip_features"]["columns"]
    assert set(features) == EXPECTED_COLUMNS | TOLERATED_COLUMNS
    assert {features[name]["data_type"] for name in (LABEL, *FEATURES)} <= {"double", "integer"}
    assert {"feature_name", "mean_value", "std_value"} <= set(
        nodes["model.dc_taxi.feature_stats"]["columns"]
    )


def test_a_mart_breaking_its_contract_fails_the_build_and_publishes_nothing(small_raw, tmp_path):
    small_raw.build()
    published = current_build(small_raw.lake).snapshots

    # A change a careless edit could make: the hour as a bigint instead of an integer.
    project_dir = tmp_path / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project", project_dir, ignore=shutil.ignore_patterns("target", "logs")
    )
    model = project_dir / "models" / "marts" / "trip_features.sql"
    line = "cast(extract(hour from pickup_at) as integer) as pickup_hour"
    assert line in model.read_text()
    model.write_text(model.read_text().replace(line, line.replace("integer", "bigint")))

    result = small_raw.dbt("build", "--project-dir", str(project_dir))
    assert result.returncode != 0
    assert "This model has an enforced contract that failed" in result.output
    assert "| pickup_hour | BIGINT          | INTEGER       | data type mismatch |" in (
        result.output
    )
    assert "lake: NOT published" in result.output
    assert current_build(small_raw.lake).snapshots == published
