"""The logged model by name, and `python -m training.predict` into the lake and into a file."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.builds import pin_build
from lakehouse.catalog import open_catalog
from lakehouse.predictions import TABLE, predictions_table
from scripts.random_fare_models import exported_fares, random_trips, register_fare_model
from training import predict
from training.lake import FEATURES

MODEL = "test-fare"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A tracking store with two registered versions of a fare model; the first is champion."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    first = register_fare_model(uri, MODEL, seed=1, alias="champion")
    second = register_fare_model(uri, MODEL, seed=2)
    return uri, [first, second]


def test_named_columns_of_any_numeric_dtype_equal_the_export_path(registry):
    _, [(regressor, version), _] = registry
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    frame = random_trips(300)
    expected = exported_fares(regressor, frame)
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
        model.predict(random_trips(3).drop(columns=["pickup_hour"]))
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
        joined["predicted_fare"], exported_fares(first, joined), rtol=1e-5, atol=1e-5
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
    frame = random_trips(2500, seed=7).assign(trip_key=[f"k{i}" for i in range(2500)])
    frame[["trip_key", *reversed(FEATURES)]].to_csv(tmp_path / "trips.csv", index=False)
    out = tmp_path / "scored.parquet"
    argv = ["--input", str(tmp_path / "trips.csv"), "--out", str(out), "--tracking-uri", uri]
    argv += ["--model", f"models:/{MODEL}@champion", "--no-progress", "--batch-rows", "1000"]
    assert predict.main(argv) == 0
    scored = pq.read_table(out).to_pandas()
    assert list(scored["trip_key"]) == list(frame["trip_key"])
    np.testing.assert_allclose(
        scored["predicted_fare"], exported_fares(regressor, frame), rtol=1e-5, atol=1e-5
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
