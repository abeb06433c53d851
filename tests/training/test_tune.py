"""`python -m training.tune` end to end: study storage, MLflow runs, champion, resume, failures."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from training import tune

pytestmark = pytest.mark.slow


def tune_argv(lake, tmp_path, *extra: str) -> list[str]:
    return [
        "--data", str(lake),
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--storage", str(tmp_path / "optuna.journal"),
        "--study-name", "test-study",
        "--max-epochs", "2",
        "--batch-sizes", "512,1024",
        *extra,
    ]  # fmt: skip


def load_study(tmp_path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    return optuna.load_study(study_name="test-study", storage=storage)


def runs_of(experiment: str = "dc-taxi") -> list[mlflow.entities.Run]:
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_tune_tracks_trials_crowns_a_champion_and_resumes(fare_lake, tmp_path):
    assert tune.main(tune_argv(fare_lake, tmp_path, "--n-trials", "3")) == 0

    study = load_study(tmp_path)
    assert len(study.trials) == 3
    runs = runs_of()
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3
    assert parent.info.run_name == "test-study"
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    for child in children:
        number = int(child.data.tags["optuna.trial"])
        trial = study.trials[number]
        assert child.data.tags["optuna.state"] == trial.state.name
        assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
        assert "trial.lr" in child.data.params and "val_rmse" in child.data.metrics
        assert "data.train.rows" in child.data.tags  # lineage on every run

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("dc-taxi-fare", "champion")
    best_run = client.get_run(study.best_trial.user_attrs["mlflow_run_id"])
    assert champion.run_id == best_run.info.run_id
    assert "test_rmse" in best_run.data.metrics
    assert client.get_run(parent.info.run_id).data.metrics["test_rmse"] == pytest.approx(
        best_run.data.metrics["test_rmse"]
    )
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert "optuna/optimization_history.html" in plots
    assert "optuna/parallel_coordinate.html" in plots

    # Resume: the same study and parent run get two more trials.
    assert tune.main(tune_argv(fare_lake, tmp_path, "--n-trials", "2")) == 0
    assert len(load_study(tmp_path).trials) == 5
    runs = runs_of()
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    assert len([r for r in runs if "mlflow.parentRunId" in r.data.tags]) == 5


def test_a_diverging_trial_fails_and_the_study_goes_on(fare_lake, tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    study = optuna.create_study(study_name="test-study", storage=storage)
    study.enqueue_trial({"lr": 1e12, "optimizer": "sgd", "batch_norm": False})
    argv = tune_argv(fare_lake, tmp_path, "--n-trials", "2", "--gradient-clip", "0")
    assert tune.main(argv) == 0

    states = [trial.state for trial in load_study(tmp_path).trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    failed = [r for r in runs_of() if r.data.tags.get("optuna.state") == "FAIL"]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    assert "diverged" in failed[0].data.tags["optuna.error"]
