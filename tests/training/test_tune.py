"""`python -m training.tune` end to end: study storage, MLflow runs, champion, resume, failures."""

from __future__ import annotations

import json

import mlflow
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from scripts.synthetic_lake import write_lake
from tests.training.conftest import SMALL_LAYOUT
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


def raw_stats(tmp_path, clean_rows: int) -> str:
    """A sample generator's record: the noise floor of data with `clean_rows` rows."""
    path = tmp_path / "_generator.json"
    path.write_text(json.dumps({"noise_floor_rmse": 0.5, "clean_rows": clean_rows}))
    return str(path)


def test_tune_tracks_trials_crowns_a_champion_and_resumes(fare_lake, tmp_path, capsys):
    rows = sum(sum(map(sum, files)) for files in SMALL_LAYOUT.values())
    stats = raw_stats(tmp_path, clean_rows=rows)
    assert tune.main(tune_argv(fare_lake, tmp_path, "--n-trials", "3", "--raw-stats", stats)) == 0
    output = capsys.readouterr()
    assert "(3/3), best val_rmse" in output.out  # plain progress lines: not a terminal
    assert "test_vs_noise_floor=" in output.out and "model_version=1" in output.out
    assert output.err == ""  # no warning, deprecation or library info line

    study = load_study(tmp_path)
    assert len(study.trials) == 3
    # The first trial of a new study is training.train's default model at the first trial's
    # learning rate and batch size (moved into the search space: 1024 is nearest to 2048).
    assert study.trials[0].params == {
        "n_layers": 2, "n_units_l0": 128, "n_units_l1": 64, "batch_norm": True,
        "dropout": 0.0, "optimizer": "adamw", "lr": tune.FIRST_TRIAL_LR, "batch_size": 1024,
    }  # fmt: skip
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
    parent = client.get_run(parent.info.run_id)
    assert parent.data.metrics["test_rmse"] == pytest.approx(best_run.data.metrics["test_rmse"])
    assert parent.data.metrics["best_val_rmse"] == pytest.approx(study.best_value)
    assert parent.data.metrics["noise_floor_rmse"] == 0.5
    assert parent.data.tags["model.name"] == "dc-taxi-fare"
    assert parent.data.tags["model.version"] == str(champion.version)
    assert parent.data.tags["lake.snapshot_id"] == str(study.user_attrs["lake_snapshot_id"])
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert "optuna/optimization_history.html" in plots
    assert "optuna/parallel_coordinate.html" in plots

    # Resume: the same study and parent run get two more trials. A raw-stats record of other
    # data gives no noise floor.
    stats = raw_stats(tmp_path, clean_rows=rows + 1)
    assert tune.main(tune_argv(fare_lake, tmp_path, "--n-trials", "2", "--raw-stats", stats)) == 0
    assert len(load_study(tmp_path).trials) == 5
    runs = runs_of()
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    assert len([r for r in runs if "mlflow.parentRunId" in r.data.tags]) == 5


def test_a_study_resumed_on_another_build_is_one_line_naming_study_name(tmp_path, capsys):
    lake = write_lake(tmp_path / "lake", SMALL_LAYOUT)
    argv = tune_argv(lake, tmp_path, "--n-trials", "1", "--max-epochs", "1")
    assert tune.main(argv) == 0
    write_lake(tmp_path / "lake", SMALL_LAYOUT, seed=1, build="build-2")
    capsys.readouterr()

    assert tune.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: study test-study was tuned on lake snapshot")
    assert "--study-name <new>" in line
    assert len(load_study(tmp_path).trials) == 1


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
