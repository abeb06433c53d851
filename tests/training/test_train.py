"""`python -m training.train` end to end through `main(argv)`, tracked in a real MLflow store."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from lakehouse.builds import pin_build
from training import train
from training.data import TRAINING_MARTS
from training.lake import FEATURES


def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.mark.slow
@pytest.mark.parametrize("streamed", [False, True], ids=["resident", "streamed"])
def test_train_logs_params_curves_lineage_and_a_servable_model(fare_lake, tmp_path, streamed):
    argv = [
        "--data", str(fare_lake),
        "--tracking-uri", tracking_uri(tmp_path),
        "--max-epochs", "3",
        "--batch-size", "512",
        "--hidden-sizes", "32,16",
        "--no-progress",
    ]  # fmt: skip
    if streamed:
        argv += ["--resident-mb", "0", "--num-workers", "2"]
    assert train.main(argv) == 0

    (run,) = mlflow.search_runs(experiment_names=["dc-taxi"], output_format="list")
    client = mlflow.MlflowClient()
    assert run.info.status == "FINISHED"
    assert run.data.params["model.hidden_sizes"] == "(32, 16)"
    assert run.data.params["data.batch_size"] == "512"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_rmse")] == [0, 1, 2]
    assert len(client.get_metric_history(run.info.run_id, "train_rmse")) == 3
    assert run.data.metrics["best_val_rmse"] == min(
        m.value for m in client.get_metric_history(run.info.run_id, "val_rmse")
    )
    tags = run.data.tags
    # Lineage from the snapshot itself: the build (invocation) that published the data.
    build = pin_build(str(fare_lake), marts=TRAINING_MARTS)
    assert tags["dbt.invocation_id"] == "build-1" == build.invocation_id
    assert tags["lake.snapshot_id"] == str(build.snapshot_id)
    assert tags["data.train.rows"] == "6000" and tags["data.test.files"] == "2"
    assert "git.commit" not in tags  # MLflow's own mlflow.source.git.commit says it
    lineage = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/lineage.json"))
    assert sum(f["rows"] for f in lineage["files"] if f["split"] == "validation") == 1000
    (dataset,) = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert dataset.dataset.name == f"dc_taxi.trip_features@{build.snapshot_id}"
    assert {tag.key: tag.value for tag in dataset.tags}["data.train.rows"] == "6000"

    (model,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert model.source_run_id == run.info.run_id
    predictor = mlflow.pyfunc.load_model(model.model_uri)
    trip = np.array([[38.90, -77.03, 38.92, -77.00, 2017, 5, 3, 8]] * 4)
    fares = predictor.predict(pd.DataFrame(trip, columns=FEATURES))["predicted_fare"]
    assert fares.shape == (4,) and np.all(np.isfinite(fares))


def test_train_without_data_says_run_dbt_build(tmp_path, capsys):
    argv = ["--data", str(tmp_path / "lake" / "trip_features"), "--no-progress"]
    assert train.main([*argv, "--tracking-uri", tracking_uri(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "no lake catalog at" in error and "run `dbt build` first" in error
    assert not (tmp_path / "mlflow.db").exists()  # failed before touching MLflow
