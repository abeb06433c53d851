"""A model scores the lake, `dbt build` evaluates it: model_performance against a recomputation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.catalog import local_path, open_catalog
from lakehouse.predictions import predictions_folder, publish_predictions
from scripts.random_fare_models import register_fare_model
from tests.conftest import DbtProject, generate_raw
from tests.pipeline.outputs import current_build, read_table
from training import predict

pytestmark = pytest.mark.slow

MODEL = "dc-taxi-fare"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, request):
    """A build, the champion's predictions for it, and the build that evaluates them."""
    project = DbtProject(
        tmp_path_factory.mktemp("performance"), request.config.getoption("--dbt-target")
    )
    generate_raw(project.raw, rows=20_000, months="2015-01:2015-04")
    first = project.build()
    assert "model_performance" in first.output
    assert read_table(current_build(project.lake), "model_performance").num_rows == 0
    tracking = f"sqlite:///{project.root / 'mlflow.db'}"
    _, version = register_fare_model(tracking, MODEL, seed=3, alias="champion")
    data = str(project.lake / "trip_features")
    assert predict.main(["--data", data, "--tracking-uri", tracking, "--no-progress"]) == 0
    second = project.build()
    return project, version, second


def frames(project: DbtProject) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    build = current_build(project.lake)
    features = read_table(build, "trip_features").to_pandas()
    performance = read_table(build, "model_performance").to_pandas()
    catalog = open_catalog(str(project.lake))
    predictions = catalog.load_table(("dc_taxi", "fare_predictions")).scan().to_pandas()
    return features, predictions, performance


def test_model_performance_reconciles_with_a_recomputation(evaluated):
    project, version, result = evaluated
    assert "ERROR=0" in result.output
    (line,) = [
        x
        for x in result.output.splitlines()
        if "assert_every_test_trip_scored" in x and " START " not in x
    ]
    assert "PASS" in line  # the warn-level coverage test: every test trip was scored
    features, predictions, performance = frames(project)
    assert set(performance["model_version"]) == {version}
    scored = features.merge(predictions, on="trip_key", suffixes=("", "_scored"))
    assert len(scored) == len(features)  # one prediction per accepted trip
    scored["residual"] = scored["predicted_fare"] - scored["fare_amount"]
    scored["pickup_month_key"] = [
        f"{y}-{m:02d}" for y, m in zip(scored["pickup_year"], scored["pickup_month"], strict=True)
    ]

    def expect(rows: pd.DataFrame, breakdown: str, bucket: str, split: str) -> None:
        (row,) = performance[
            (performance["breakdown"] == breakdown)
            & (performance["bucket"] == bucket)
            & (performance["split"] == split)
        ].itertuples()
        residual = rows["residual"].to_numpy()
        assert row.trip_count == len(rows)
        assert row.rmse == pytest.approx(np.sqrt(np.mean(residual**2)), rel=1e-9)
        assert row.mae == pytest.approx(np.mean(np.abs(residual)), rel=1e-9)
        assert row.bias == pytest.approx(np.mean(residual), rel=1e-9, abs=1e-12)
        assert row.mean_fare == pytest.approx(rows["fare_amount"].mean(), rel=1e-9)

    for split, rows in scored.groupby("split"):
        expect(rows, "overall", "all", split)
    test = scored[scored["split"] == "test"]
    for month, rows in test.groupby("pickup_month_key"):
        expect(rows, "pickup_month", month, "test")
    for hour, rows in test.groupby("pickup_hour"):
        expect(rows, "pickup_hour", f"{hour:02d}", "test")
    # Deciles of the actual fare, ties broken by trip_key, sizes as SQL's ntile(10) makes them.
    ordered = test.sort_values(["fare_amount", "trip_key"]).reset_index(drop=True)
    sizes = [len(ordered) // 10 + (i < len(ordered) % 10) for i in range(10)]
    start = 0
    for decile, size in enumerate(sizes, start=1):
        expect(ordered.iloc[start : start + size], "fare_decile", f"{decile:02d}", "test")
        start += size
    bins = np.clip(np.floor(test["residual"]), -10, 10).astype(int)
    histogram = performance[
        (performance["breakdown"] == "residual_dollars") & (performance["split"] == "test")
    ]
    assert dict(zip(histogram["bucket"].astype(int), histogram["trip_count"], strict=True)) == (
        bins.value_counts().to_dict()
    )


def test_duplicate_predictions_fail_the_build_and_publish_nothing(evaluated, tmp_path):
    project, version, _ = evaluated
    before = current_build(project.lake).snapshots
    _, predictions, _ = frames(project)
    doubled = pd.concat([predictions, predictions.head(3)])
    lake = str(project.lake)
    folder = predictions_folder(lake, "duplicated")
    Path(local_path(folder)).mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pandas(doubled, preserve_index=False), f"{local_path(folder)}/0.parquet"
    )
    publish_predictions(open_catalog(lake), lake, folder, MODEL, version, None)
    result = project.dbt("build")
    assert result.returncode != 0
    assert "one_prediction_per_trip_and_model_version" in result.output
    assert "lake: NOT published" in result.output
    assert current_build(project.lake).snapshots == before
