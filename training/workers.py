"""Run K tuning workers on one study: `python -m training.workers --workers K [tune flags]`.

The launcher does everything that must happen once before the workers start: it checks the
lake, creates the MLflow schema and experiment (a SQLite store is never set up by two
processes at once), creates or resumes the study and its single MLflow parent run, and fixes
the study-wide target: `--n-trials` more completed or pruned trials (or `--max-trials` in
all). Then it starts K `python -m training.tune` processes, each with its own sampler seed,
one torch thread (`--threads`) and, on a machine with GPUs, its own GPU.

While they run it watches them: a worker that dies (killed, out of memory, storage lost) has
its running trial failed, its MLflow run ended as KILLED and the trial queued again for the
others, and it is restarted (at most `--max-restarts` times in all). When all have stopped it
closes leftover runs, evaluates the best trial once on the test split and registers it.

On many machines, start `python -m training.tune --storage postgresql://... --max-trials N
--no-crown` on each (or this launcher, with the same PostgreSQL storage); heartbeats then
retry the trials of a machine that disappears.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # parse the command line before the heavy imports below
    from training.cli import main_workers

    sys.exit(main_workers())

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import mlflow
import optuna

from training.cli import CommandError, main_workers
from training.study import (
    StaleTrialReaper,
    end_orphan_runs,
    fail_trials_of,
    finished_count,
    retry_storage,
    worker_label,
)
from training.tune import Progress, TuneConfig, finish_study, open_study, parent_run

logger = logging.getLogger("training.workers")
POLL_S = 0.5
PROGRESS_S = 2.0  # how often the launcher reads the study for its progress line
INTERRUPT_WAIT_S = 5.0
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class LaunchConfig:
    """How many workers run the study's trials, and how they are started."""

    workers: int = 2
    threads: int = 1  # torch threads per worker
    max_restarts: int = 3  # restarts of workers that died, in all


@dataclass
class Worker:
    """One worker process and what it needs to be restarted."""

    index: int
    process: subprocess.Popen
    label: str
    seed: int


@dataclass
class Launcher:
    """Starts, watches and restarts the workers of one study."""

    tune: TuneConfig
    launch: LaunchConfig
    worker_argv: list[str]
    target: int
    study: optuna.Study
    storage: optuna.storages.BaseStorage
    progress: Progress
    running: list[Worker] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)  # every worker ever started
    restarts: int = 0
    failures: int = 0
    started: int = 0

    def next_seed(self) -> int:
        """A sampler seed no worker of this launch had: a restarted one must not redo trials."""
        base = self.tune.sampler_seed
        return (base if base is not None else self.tune.base.data.seed) + self.started

    def env_for(self, index: int) -> dict[str, str]:
        env = dict(os.environ)
        threads = str(self.launch.threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        gpus = visible_gpus()
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        return env

    def start(self, index: int) -> Worker:
        seed = self.next_seed()
        self.started += 1
        command = [
            sys.executable,
            "-m",
            "training.tune",
            *self.worker_argv,
            "--max-trials", str(self.target),
            "--n-trials", str(self.target),  # the study-wide cap is what stops a worker
            "--sampler-seed", str(seed),
            "--no-crown",
            "--no-progress",
        ]  # fmt: skip
        process = subprocess.Popen(command, env=self.env_for(index))
        worker = Worker(index, process, worker_label(process.pid), seed)
        self.labels.add(worker.label)
        logger.info("worker %d started: pid %d, sampler seed %d", index, process.pid, seed)
        return worker

    def start_all(self) -> None:
        self.running = [self.start(index) for index in range(self.launch.workers)]

    def reap(self, labels: set[str], reason: str) -> list[int]:
        """Fail and queue again the running trials of dead workers (waiting for the storage:
        a worker that died because the database restarts is reaped once it is back)."""
        reaper = StaleTrialReaper(self.tune.max_retry, reason)
        return retry_storage(
            lambda: fail_trials_of(self.study, self.storage, labels, reaper, reason)
        )

    def finished(self) -> int:
        return retry_storage(lambda: finished_count(self.study))

    def show_progress(self) -> None:
        done = self.finished()
        self.progress.update(done, self.study, "trials done")

    def watch(self) -> None:
        """Until every worker has stopped: reap and restart the ones that die."""
        shown = time.monotonic()
        while self.running:
            time.sleep(POLL_S)
            if time.monotonic() - shown > PROGRESS_S:
                self.show_progress()
                shown = time.monotonic()
            for worker in list(self.running):
                code = worker.process.poll()
                if code is None:
                    continue
                self.running.remove(worker)
                if code == 0:
                    continue
                self.failures += 1
                reason = f"worker {worker.label} exited with {describe_exit(code)}"
                trials = self.reap({worker.label}, reason)
                logger.warning("%s; trials failed and queued again: %s", reason, trials or "none")
                if self.finished() >= self.target:
                    continue
                if self.restarts >= self.launch.max_restarts:
                    logger.error("no restarts left (--max-restarts %d)", self.launch.max_restarts)
                    continue
                self.restarts += 1
                self.running.append(self.start(worker.index))

    def stop_all(self, parent_id: str) -> None:
        """Interrupted: stop the workers (their trials fail cleanly), kill what lingers, and
        leave no trial or MLflow run RUNNING."""
        # Ctrl-C in a terminal has reached the workers too; a second SIGINT could cut their
        # clean-up short, so it goes only to those still running after a moment.
        self.wait_all(INTERRUPT_WAIT_S)
        for worker in self.running:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGINT)
        for worker in self.wait_all(STOP_GRACE_S):
            worker.process.kill()
            worker.process.wait()
        self.reap(self.labels, "launcher interrupted")
        end_orphan_runs(self.study, parent_id)

    def wait_all(self, seconds: float) -> list[Worker]:
        """Wait up to `seconds` for the running workers to exit; those still running."""
        deadline = time.monotonic() + seconds
        for worker in self.running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        return [worker for worker in self.running if worker.process.poll() is None]


def visible_gpus() -> list[str]:
    """The GPUs workers are spread over: CUDA_VISIBLE_DEVICES if set, else all of them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def run(tune: TuneConfig, launch: LaunchConfig, worker_argv: list[str]) -> dict[str, float]:
    """Prepare the study once, run the workers to the target, crown the best trial."""
    opened = open_study(tune)
    study, tune = opened.study, opened.tune
    done = finished_count(study)
    target = tune.max_trials if tune.max_trials is not None else done + (tune.n_trials or 0)
    launcher = Launcher(
        tune=tune,
        launch=launch,
        worker_argv=pinned_argv(worker_argv, opened.build.snapshot_id),
        target=target,
        study=study,
        storage=opened.storage,
        progress=Progress(tune.progress, target, done),
    )
    with parent_run(opened):
        mlflow.set_tag("optuna.workers", str(launch.workers))
        print(f"study {tune.study_name}: {done} trials done, running to {target}", flush=True)
        if done < target:
            launcher.start_all()
            try:
                launcher.watch()
            except KeyboardInterrupt:
                launcher.stop_all(opened.parent_id)
                raise
            finally:
                launcher.progress.close()
        launcher.reap(launcher.labels, "worker gone when the launcher finished")
        done = launcher.finished()
        result = finish_study(opened)
    result.update(worker_failures=launcher.failures, worker_restarts=launcher.restarts)
    if done < target:
        raise WorkersFailed(
            f"study {tune.study_name} reached {done} of {target} trials: workers kept failing"
            " (see their errors above); rerun the same command to go on"
        )
    return result


def pinned_argv(argv: Sequence[str], snapshot_id: int) -> list[str]:
    """The workers' arguments with the launcher's pinned snapshot instead of --snapshot/--as-of:
    every worker reads the build the launcher resolved, whatever is published meanwhile."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in ("--snapshot", "--as-of"):
            skip = True
        elif not token.startswith(("--snapshot=", "--as-of=")):
            kept.append(token)
    return [*kept, "--snapshot", str(snapshot_id)]


class WorkersFailed(CommandError):
    """The workers stopped before the study reached its target."""


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.workers [flags]` (the command line lives in training.cli)."""
    return main_workers(argv)
