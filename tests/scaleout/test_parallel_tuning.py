"""Many tuning workers on one study: one parent run, a global trial cap, dead workers reaped."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from scripts import mlflow_server, postgres_server, s3_server
from tests.scaleout.conftest import finish, start_cli, wait_for
from training import tune
from training.data import DataConfig
from training.study import DONE, RUN_ATTR, WORKER_ATTR, finished_count
from training.tracking import configure_tracking
from training.train import TrainConfig


def tune_argv(lake: Path, tmp_path: Path, storage: str, study: str, *extra: str) -> list[str]:
    return [
        "--data", str(lake),
        "--storage", storage,
        "--study-name", study,
        "--max-epochs", "2",
        "--patience", "5",
        "--batch-sizes", "256",
        "--pruner", "none",  # every trial runs all its epochs: time to kill one mid-trial
        *extra,
    ]  # fmt: skip


def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def rdb(url: str) -> optuna.storages.RDBStorage:
    """The test's own view of a PostgreSQL study (reconnecting after a restart)."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def running_trial_with_run(storage, study_name: str):
    """A check for `wait_for`: a RUNNING trial that has started its MLflow run."""

    def check():
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:  # not created yet
            return None
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return next((t for t in running if RUN_ATTR in t.user_attrs), None)

    return check


def kill_worker_of(trial: optuna.trial.FrozenTrial) -> None:
    pid = int(trial.user_attrs[WORKER_ATTR].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)


def study_runs() -> tuple[list, list]:
    """(parent runs, child runs) of the dc-taxi experiment in the current tracking store."""
    runs = mlflow.search_runs(experiment_names=["dc-taxi"], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def assert_retried(study: optuna.Study, victim: optuna.trial.FrozenTrial, why: str) -> None:
    """The victim failed, its run was KILLED, and one retry with its parameters finished."""
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state in DONE and retry.params == killed.params
    client = mlflow.MlflowClient()
    killed_run = client.get_run(killed.user_attrs[RUN_ATTR])
    assert killed_run.info.status == "KILLED"
    assert why in killed_run.data.tags["optuna.error"]
    retry_run = client.get_run(retry.user_attrs[RUN_ATTR])
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["optuna.retry_of"] == str(victim.number)


def assert_one_parent_and_nothing_running(study: optuna.Study) -> list:
    parents, children = study_runs()
    assert [p.info.run_id for p in parents] == [study.user_attrs[tune.PARENT_ATTR]]
    assert parents[0].info.status == "FINISHED"
    assert not [r.info.run_name for r in children if r.info.status == "RUNNING"]
    return children


@pytest.mark.parametrize("backend", ["journal", "postgres"])
def test_workers_starting_a_new_study_at_once_make_one_parent_run(
    small_lake, tmp_path, backend, request
):
    storage = (
        str(tmp_path / "optuna.journal")
        if backend == "journal"
        else request.getfixturevalue("pg_storage")
    )
    base = TrainConfig(data=DataConfig(data=str(small_lake)), tracking_uri=sqlite_uri(tmp_path))
    config = tune.TuneConfig(base=base, storage=storage, study_name="race")
    experiment_id = configure_tracking(base.tracking_uri, base.experiment)
    starters = 6
    barrier = threading.Barrier(starters)

    def start(seed: int) -> str:
        barrier.wait()  # all of them open the brand-new study at the same moment
        _, _, parent = tune.prepare_study(replace(config, sampler_seed=seed), experiment_id)
        return parent

    with ThreadPoolExecutor(starters) as pool:
        parents = set(pool.map(start, range(starters)))

    runs = mlflow.search_runs(experiment_ids=[experiment_id], output_format="list")
    assert len(parents) == 1
    assert [run.info.run_id for run in runs] == list(parents)


def test_tuning_refuses_ddp_and_points_at_workers(small_lake, tmp_path, capsys):
    argv = tune_argv(small_lake, tmp_path, str(tmp_path / "j"), "s", "--devices", "2")
    assert tune.main(argv) == 2
    assert "python -m training.workers --workers N" in capsys.readouterr().err
    assert not (tmp_path / "j").exists()


def test_an_unreachable_storage_is_one_clear_line_without_the_password(
    small_lake, tmp_path, capsys
):
    closed_port = postgres_server.free_port()
    storage = f"postgresql+psycopg://dc_taxi:hunter2@127.0.0.1:{closed_port}/optuna"
    argv = tune_argv(small_lake, tmp_path, storage, "s", "--tracking-uri", sqlite_uri(tmp_path))
    assert tune.main(argv) == 3
    stderr = capsys.readouterr().err
    (error,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: the Optuna storage postgresql+psycopg://dc_taxi:***@")
    assert "scripts.postgres_server status" in error
    assert "hunter2" not in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_a_killed_worker_has_its_trial_retried_and_its_run_killed(long_lake, tmp_path):
    journal = str(tmp_path / "optuna.journal")
    argv = tune_argv(
        long_lake, tmp_path, journal, "kill",
        "--workers", "2", "--n-trials", "3", "--tracking-uri", sqlite_uri(tmp_path),
    )  # fmt: skip
    log = tmp_path / "workers.log"
    launcher = start_cli("training.workers", argv, log)
    storage = JournalStorage(JournalFileBackend(journal))
    victim = wait_for(running_trial_with_run(storage, "kill"), 240, "a trial to start")
    kill_worker_of(victim)
    output = finish(launcher, log)

    study = optuna.load_study(study_name="kill", storage=storage)
    assert 3 <= finished_count(study) <= 4  # the cap, overshot by at most workers - 1
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    assert_retried(study, victim, "exited with signal SIGKILL")
    children = assert_one_parent_and_nothing_running(study)
    assert len({run.data.tags["optuna.worker"] for run in children}) >= 2
    assert "worker_failures=1 worker_restarts=1" in output
    champion = mlflow.MlflowClient().get_model_version_by_alias("dc-taxi-fare", "champion")
    assert champion.run_id == study.best_trial.user_attrs[RUN_ATTR]


@pytest.mark.slow
def test_heartbeats_retry_the_trial_of_a_lost_machine(long_lake, tmp_path, pg_storage):
    """Two `training.tune` processes as on two machines, no launcher: only heartbeats."""
    common = tune_argv(
        long_lake, tmp_path, pg_storage, "heartbeat",
        "--tracking-uri", sqlite_uri(tmp_path),
        "--heartbeat-interval", "1", "--grace-period", "3", "--no-progress",
    )  # fmt: skip
    lost = start_cli("training.tune", [*common, "--no-crown"], tmp_path / "lost.log")
    storage = rdb(pg_storage)
    victim = wait_for(running_trial_with_run(storage, "heartbeat"), 240, "a trial to start")
    lost.kill()
    lost.wait()
    log = tmp_path / "survivor.log"
    finish(start_cli("training.tune", [*common, "--max-trials", "2"], log), log)

    study = optuna.load_study(study_name="heartbeat", storage=storage)
    assert finished_count(study) == 2
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    assert_retried(study, victim, "no heartbeat")
    assert_one_parent_and_nothing_running(study)


@pytest.fixture(scope="module")
def mlflow_on_postgres_and_s3(postgres, tmp_path_factory):
    """`mlflow server`: runs in the PostgreSQL cluster, artifacts in a SeaweedFS bucket."""
    root = tmp_path_factory.mktemp("mlflow-server")
    s3 = s3_server.start(root / "s3", port=0, bucket="mlflow-test")
    identity = s3_server.server_identity(root / "s3")
    postgres_server.create_database(postgres, "mlflow")
    try:
        server = mlflow_server.start(
            root / "server",
            port=0,
            backend_store_uri=postgres.url("mlflow", password=""),
            artifacts_destination="s3://mlflow-test/artifacts",
            artifacts_env=s3.env(identity),
        )
        yield server, s3_server.s3_client(s3.endpoint, identity)
    finally:
        mlflow_server.stop(root / "server", timeout=5)
        s3_server.stop(root / "s3", timeout=2)


@pytest.mark.slow
def test_workers_ride_out_a_postgres_restart_with_a_shared_mlflow_server(
    long_lake, tmp_path, postgres, pg_storage, mlflow_on_postgres_and_s3
):
    server, s3 = mlflow_on_postgres_and_s3
    argv = tune_argv(
        long_lake, tmp_path, pg_storage, "restart", "--workers", "2", "--n-trials", "3"
    )
    log = tmp_path / "workers.log"
    launcher = start_cli("training.workers", argv, log, MLFLOW_TRACKING_URI=server.url)
    storage = rdb(pg_storage)

    def completed():
        try:
            study = optuna.load_study(study_name="restart", storage=storage)
        except KeyError:
            return None
        done = study.get_trials(states=(TrialState.COMPLETE,))
        return {trial.number: trial.value for trial in done}

    before = wait_for(completed, 240, "a completed trial")
    postgres_server.restart(Path(postgres.data_dir))
    finish(launcher, log)

    study = optuna.load_study(study_name="restart", storage=storage)
    after = {t.number: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    assert before.items() <= after.items()  # no completed trial lost or changed
    assert finished_count(study) >= 3
    mlflow.set_tracking_uri(server.url)
    assert_one_parent_and_nothing_running(study)
    best_run = study.best_trial.user_attrs[RUN_ATTR]
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="mlflow-test")["Contents"]]
    assert any(best_run in key and key.endswith("checkpoint/best.ckpt") for key in keys)
    champion = mlflow.MlflowClient().get_model_version_by_alias("dc-taxi-fare", "champion")
    assert champion.run_id == best_run


@pytest.mark.slow
def test_a_killed_tune_is_cleaned_up_when_its_study_resumes(long_lake, tmp_path):
    """Journal storage has no heartbeats: the resumed study fails and retries the dead trial."""
    journal = str(tmp_path / "optuna.journal")
    argv = tune_argv(
        long_lake, tmp_path, journal, "resume",
        "--tracking-uri", sqlite_uri(tmp_path), "--no-progress",
    )  # fmt: skip
    log = tmp_path / "tune.log"
    first = start_cli("training.tune", [*argv, "--n-trials", "2"], log)
    storage = JournalStorage(JournalFileBackend(journal))
    victim = wait_for(running_trial_with_run(storage, "resume"), 240, "a trial to start")
    first.send_signal(signal.SIGKILL)
    first.wait()

    assert tune.main([*argv, "--n-trials", "1"]) == 0

    study = optuna.load_study(study_name="resume", storage=storage)
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    assert_retried(study, victim, "its process is gone")
    assert_one_parent_and_nothing_running(study)
    (parent,), _ = study_runs()
    assert parent.data.metrics.get("trials_running", 0) == 0
    assert parent.data.metrics["trials_fail"] == 1
