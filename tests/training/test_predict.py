"""The logged model by name, and `python -m training.predict` into the lake and into a file."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lakehouse.builds import pin_build
from lakehouse.catalog import open_catalog
from lakehouse.predictions import TABLE, predictions_table
from training import predict
from training.lake import FEATURES
from training.model import FareRegressor, export_predictor
from training.tracking import log_fare_model

MODEL = "test-fare"
STATS = {
    "feature_mean": [38.9, -77.0, 38.9, -77.0, 2017.0, 6.5, 4.0, 12.0],
    "feature_std": [0.03, 0.04, 0.03, 0.04, 1.4, 3.4, 2.0, 6.9],
}


def trips(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "origin_lat": rng.uniform(38.82, 38.99, rows),
            "origin_lon": rng.uniform(-77.11, -76.92, rows),
            "dest_lat": rng.uniform(38.82, 38.99, rows),
            "dest_lon": rng.uniform(-77.11, -76.92, rows),
            "pickup_year": rng.integers(2015, 2020, rows),
            "pickup_month": rng.integers(1, 13, rows),
            "pickup_dow": rng.integers(1, 8, rows),
            "pickup_hour": rng.integers(0, 24, rows),
        }
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A tracking store with two registered versions of a (randomly initialised) fare model."""
    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("predict-tests")
    regressors = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        regressor = FareRegressor(**STATS, label_mean=12.0).eval()
        with mlflow.start_run():
            info = log_fare_model(regressor, trips(5).to_numpy(np.float64))
        version = mlflow.register_model(info.model_uri, MODEL)
        regressors.append((regressor, str(version.version)))
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(MODEL, "champion", regressors[0][1])
    return uri, regressors


def exported(regressor: FareRegressor, frame: pd.DataFrame) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(frame[list(FEATURES)].to_numpy(np.float32))
        return export_predictor(regressor)(x).numpy()


def test_named_columns_of_any_numeric_dtype_equal_the_export_path(registry):
    _, [(regressor, version), _] = registry
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    frame = trips(300)
    expected = exported(regressor, frame)
    as_float64 = frame.astype(np.float64)
    as_ints = frame.assign(**{c: frame[c].astype(np.int64) for c in FEATURES[4:]})
    as_float32 = frame.astype(np.float32)
    shuffled = frame[list(reversed(FEATURES))].assign(comment="extra columns are ignored")
    for candidate in (as_float64, as_ints, as_float32, shuffled):
        result = model.predict(candidate)
        assert list(result.columns) == ["predicted_fare"]
        np.testing.assert_allclose(result["predicted_fare"], expected, rtol=1e-5, atol=1e-5)
    signature = model.metadata.signature
    assert signature.inputs.input_names() == list(FEATURES)
    assert signature.outputs.input_names() == ["predicted_fare"]


def test_a_missing_column_is_a_one_line_error_naming_it(registry):
    _, [(_, version), _] = registry
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    with pytest.raises(ValueError) as error:
        model.predict(trips(3).drop(columns=["pickup_hour"]))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("missing feature column(s) pickup_hour —")


def read_predictions(lake) -> pa.Table:
    catalog = open_catalog(str(lake.parent))
    return predictions_table(catalog, str(lake.parent)).scan().to_arrow()


def test_predict_scores_every_trip_of_the_build_into_the_lake(registry, fare_lake, tmp_path):
    uri, [(first, v1), (_, v2)] = registry
    argv = ["--data", str(fare_lake), "--tracking-uri", uri, "--no-progress", "--batch-rows", "700"]
    assert predict.main([*argv, "--model", f"models:/{MODEL}@champion"]) == 0

    build = pin_build(str(fare_lake), marts=("trip_features",))
    features = pa.concat_tables(
        pq.read_table(f.uri.removeprefix("file://")) for f in build.data_files("trip_features")
    ).to_pandas()
    scored = read_predictions(fare_lake).to_pandas()
    assert len(scored) == len(features) == scored["trip_key"].nunique()
    assert set(scored["model_version"]) == {v1} and set(scored["model_name"]) == {MODEL}
    assert set(scored["lake_snapshot_id"]) == {build.snapshot_id}
    joined = features.merge(scored, on="trip_key", suffixes=("", "_predicted"))
    assert (joined["split"] == joined["split_predicted"]).all()
    np.testing.assert_allclose(
        joined["predicted_fare"], exported(first, joined), rtol=1e-5, atol=1e-5
    )

    # Another version adds its rows; scoring v1 again replaces v1's rows, in one commit each.
    assert predict.main([*argv, "--model", f"models:/{MODEL}/{v2}"]) == 0
    assert predict.main([*argv, "--model", f"models:/{MODEL}/{v1}"]) == 0
    scored = read_predictions(fare_lake).to_pandas()
    rows = scored.groupby("model_version").size().to_dict()
    assert rows == {v1: len(features), v2: len(features)}
    table = predictions_table(open_catalog(str(fare_lake.parent)), str(fare_lake.parent))
    assert table.name() == ("dc_taxi", TABLE)
    assert len(table.snapshots()) == 3


def test_predict_a_csv_file_by_column_name(registry, tmp_path):
    uri, [(regressor, _), _] = registry
    frame = trips(2500, seed=7).assign(trip_key=[f"k{i}" for i in range(2500)])
    frame[["trip_key", *reversed(FEATURES)]].to_csv(tmp_path / "trips.csv", index=False)
    out = tmp_path / "scored.parquet"
    argv = ["--input", str(tmp_path / "trips.csv"), "--out", str(out), "--tracking-uri", uri]
    argv += ["--model", f"models:/{MODEL}@champion", "--no-progress", "--batch-rows", "1000"]
    assert predict.main(argv) == 0
    scored = pq.read_table(out).to_pandas()
    assert list(scored["trip_key"]) == list(frame["trip_key"])
    np.testing.assert_allclose(
        scored["predicted_fare"], exported(regressor, frame), rtol=1e-5, atol=1e-5
    )


def test_predict_errors_are_one_line(registry, tmp_path, capsys):
    uri, _ = registry
    pd.DataFrame({"origin_lat": [38.9]}).to_parquet(tmp_path / "few.parquet")
    argv = ["--input", str(tmp_path / "few.parquet"), "--tracking-uri", uri, "--no-progress"]
    assert predict.main([*argv, "--model", f"models:/{MODEL}@champion"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "lacks feature column(s) origin_lon" in error
    assert predict.main([*argv, "--model", f"models:/{MODEL}@nobody"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "nobody" in error and "training.tune" in error
