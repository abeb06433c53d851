"""Where an Optuna study lives and how trials of dead workers are cleaned up.

Storage: a journal file (one machine, any number of processes; the default) or an Optuna RDB
URL (PostgreSQL for many machines). Only the RDB storage has heartbeats in Optuna 5: a worker
records one every `heartbeat_interval` s while it runs a trial, and the next worker to start a
trial fails any trial whose heartbeat is older than `grace_period` and retries it. The journal
storage has none, so a trial of a killed worker stays RUNNING until the launcher that started
the worker (`training.workers`) sees the worker exit and fails it (`fail_trials_of`).

Either way the dead trial's MLflow child run is ended as KILLED (`end_trial_run`), the trial is
retried once more with the same parameters, and `end_orphan_runs` ends any child run whose
trial is no longer running, so no MLflow run of a study stays RUNNING after its workers stop.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import mlflow
import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning, StorageInternalError, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from training.tracking_names import TRIAL_RUN_ATTR

logger = logging.getLogger(__name__)
T = TypeVar("T")

WORKER_ATTR = "worker"  # trial user attr: host:pid of the process running it
RUN_ATTR = TRIAL_RUN_ATTR  # trial user attr: its MLflow child run
DONE = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts towards a study's trial budget
SCHEMA_ATTEMPTS = 3
STORAGE_WAIT_S = 120.0  # how long the launcher waits for a restarting database


def worker_label(pid: int | None = None) -> str:
    """`host:pid` of a worker process (this one by default)."""
    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


def is_rdb_url(storage: str) -> bool:
    return "://" in storage


def masked(storage: str) -> str:
    """A storage URL without its password, for logs, tags and error messages."""
    if not is_rdb_url(storage):
        return storage
    try:
        return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return storage.split("@")[-1]


class HeartbeatRDBStorage(RDBStorage):
    """RDBStorage whose heartbeat survives a database restart.

    Optuna's heartbeat thread stops at the first failed write, after which the live trial would
    look dead to every other worker; here a failed beat is logged and the next one tried.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError) as error:
            logger.warning("heartbeat of trial id %s missed: %s", trial_id, first_line(error))


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def storage_failure(error: BaseException) -> BaseException | None:
    """The database error behind `error`, if there is one.

    Optuna wraps driver errors in StorageInternalError, and a failure while it records a
    failed trial can surface as some other exception whose context holds the real one.
    """
    found, seen = None, error
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.SQLAlchemyError):
            return seen
        if isinstance(seen, StorageInternalError):
            found = found or seen
        seen = seen.__cause__ or seen.__context__
    return found


def retry_storage(action: Callable[[], T], timeout: float = STORAGE_WAIT_S) -> T:
    """Run `action`, retrying while the storage's database is unreachable (restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except Exception as error:
            failure = storage_failure(error)
            if failure is None or time.monotonic() > deadline:
                raise
            logger.warning("storage unavailable (%s); retrying", first_line(failure))
            time.sleep(1.0)


def end_trial_run(trial: FrozenTrial, reason: str) -> None:
    """End the MLflow child run of a trial that died as KILLED (no-op if already ended)."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    if run_id is None:
        return
    client = mlflow.MlflowClient()
    try:
        if client.get_run(run_id).info.status != "RUNNING":
            return
        client.set_tag(run_id, "optuna.state", TrialState.FAIL.name)
        client.set_tag(run_id, "optuna.error", reason)
        client.set_terminated(run_id, "KILLED")
    except mlflow.exceptions.MlflowException as error:  # the sweep at the end tries again
        logger.warning("could not end MLflow run %s of trial %s: %s", run_id, trial.number, error)


class StaleTrialReaper:
    """Called once per dead trial: end its MLflow run, then queue it again (`max_retry` times).

    Used as RDBStorage's `heartbeat_stale_trial_callback` and by the launcher for workers it
    saw die. The retry is Optuna's: a WAITING trial with the same parameters, which the next
    free worker picks up first; its `retry_history` system attr names the trial it repeats.
    """

    def __init__(self, max_retry: int | None = 3, reason: str = "worker lost (no heartbeat)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.reason = reason

    def __call__(self, study: optuna.Study, trial: FrozenTrial, reason: str | None = None) -> None:
        end_trial_run(trial, f"{reason or self.reason}; trial {trial.number} queued again")
        self.retry(study, trial)
        logger.warning("trial %s: %s — queued again", trial.number, reason or self.reason)


def open_storage(
    storage: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = 3,
) -> BaseStorage:
    """An RDB URL (with heartbeats when `heartbeat_interval` is set) or a journal file path."""
    if not is_rdb_url(storage):
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage))
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", ExperimentalWarning)
                return HeartbeatRDBStorage(
                    storage,
                    # Reconnect after a database restart instead of failing on a dead connection.
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=StaleTrialReaper(max_retry),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers on several machines creating Optuna's tables in a new database at once:
            # one wins, the others find the tables there when they try again.
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards the study's budget: completed or pruned."""
    return len(study.get_trials(deepcopy=False, states=DONE))


def fail_trials_of(
    study: optuna.Study,
    storage: BaseStorage,
    workers: Collection[str],
    reaper: StaleTrialReaper,
    reason: str,
) -> list[int]:
    """Fail the RUNNING trials of dead `workers` (labels), reap and retry each exactly once.

    Returns the numbers of the trials failed here. A trial another process failed first (a
    heartbeat sweep) is left to that process.
    """
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(WORKER_ATTR) not in workers:
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        reaper(study, copy.deepcopy(storage.get_trial(trial._trial_id)), reason)
        failed.append(trial.number)
    return failed


def process_gone(label: str, started: datetime | None) -> bool:
    """Whether the process `host:pid` that started a trial at `started` no longer runs.

    Only decidable for this host; a pid now used by a process that began after the trial
    started is another process.
    """
    import psutil

    host, _, pid = label.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        began = psutil.Process(int(pid)).create_time()
    except psutil.NoSuchProcess:
        return True
    return started is not None and began > started.timestamp() + 1.0


def reap_dead_local_trials(
    study: optuna.Study, storage: BaseStorage, max_retry: int | None = 3
) -> list[int]:
    """Fail and retry the RUNNING trials whose process on this machine died (kill -9, OOM).

    The journal storage has no heartbeats, so a killed `training.tune` would leave its trial
    RUNNING, and its MLflow run RUNNING, for good; a resumed study cleans them up here.
    """
    dead = {
        trial.user_attrs[WORKER_ATTR]
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if WORKER_ATTR in trial.user_attrs
        and process_gone(trial.user_attrs[WORKER_ATTR], trial.datetime_start)
    }
    if not dead:
        return []
    reason = "its process is gone (found when the study resumed)"
    return fail_trials_of(study, storage, dead, StaleTrialReaper(max_retry, reason), reason)


def end_orphan_runs(study: optuna.Study, parent_run_id: str) -> int:
    """End every RUNNING child run of the study whose trial is no longer RUNNING; how many."""
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and status = 'RUNNING'",
    )
    trials = study.get_trials(deepcopy=False)
    ended = 0
    for run in runs:
        number = int(run.data.tags.get("optuna.trial", -1))
        if 0 <= number < len(trials) and trials[number].state == TrialState.RUNNING:
            continue  # still being worked on
        state = trials[number].state.name if 0 <= number < len(trials) else "unknown"
        client.set_tag(run.info.run_id, "optuna.error", f"run left open; trial is {state}")
        client.set_terminated(run.info.run_id, "KILLED")
        ended += 1
    return ended
