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

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import mlflow
import optuna

from training.checks import argument_error
from training.lake import LakeError
from training.study import (
    StaleTrialReaper,
    end_orphan_runs,
    fail_trials_of,
    finished_count,
    retry_storage,
    storage_failure,
    worker_label,
)
from training.tracking import configure_tracking
from training.tune import (
    NoCompletedTrial,
    TuneConfig,
    build_parser,
    check_study_snapshot,
    finish_study,
    log_parent_lineage,
    one_device_error,
    pin_study,
    prepare_study,
    storage_error,
    tune_config_from_args,
)

logger = logging.getLogger("training.workers")
POLL_S = 0.5
INTERRUPT_WAIT_S = 5.0
STOP_GRACE_S = 30.0


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("launcher")
    group.add_argument("--workers", type=int, default=2, help="worker processes to run")
    group.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="restarts of workers that died, in all, before giving up",
    )
    group.add_argument("--threads", type=int, default=1, help="torch threads per worker")


def split_argv(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's own flags, and the rest (passed on to every worker)."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_worker_arguments(own)
    return own.parse_known_args(argv)


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
    worker_argv: list[str]
    workers: int
    threads: int
    max_restarts: int
    target: int
    study: optuna.Study
    storage: optuna.storages.BaseStorage
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
        threads = str(self.threads)
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
        self.running = [self.start(index) for index in range(self.workers)]

    def reap(self, labels: set[str], reason: str) -> list[int]:
        """Fail and queue again the running trials of dead workers (waiting for the storage:
        a worker that died because the database restarts is reaped once it is back)."""
        reaper = StaleTrialReaper(self.tune.max_retry, reason)
        return retry_storage(
            lambda: fail_trials_of(self.study, self.storage, labels, reaper, reason)
        )

    def finished(self) -> int:
        return retry_storage(lambda: finished_count(self.study))

    def watch(self) -> None:
        """Until every worker has stopped: reap and restart the ones that die."""
        while self.running:
            time.sleep(POLL_S)
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
                if self.restarts >= self.max_restarts:
                    logger.error("no restarts left (--max-restarts %d)", self.max_restarts)
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


def run(args: argparse.Namespace, tune: TuneConfig, worker_argv: list[str]) -> dict[str, float]:
    """Prepare the study once, run the workers to the target, crown the best trial."""
    tune, build, lineage = pin_study(tune)
    experiment_id = configure_tracking(tune.base.tracking_uri, tune.base.experiment)
    study, storage, parent_id = prepare_study(tune, experiment_id)
    check_study_snapshot(study, tune, build)
    done = finished_count(study)
    target = tune.max_trials if tune.max_trials is not None else done + (tune.n_trials or 0)
    launcher = Launcher(
        tune=tune,
        worker_argv=pinned_argv(worker_argv, build.snapshot_id),
        workers=args.workers,
        threads=args.threads,
        max_restarts=args.max_restarts,
        target=target,
        study=study,
        storage=storage,
    )
    with mlflow.start_run(run_id=parent_id):
        log_parent_lineage(tune, build, lineage)
        mlflow.set_tag("optuna.workers", str(args.workers))
        print(f"study {tune.study_name}: {done} trials done, running to {target}", flush=True)
        if done < target:
            launcher.start_all()
            try:
                launcher.watch()
            except KeyboardInterrupt:
                launcher.stop_all(parent_id)
                raise
        launcher.reap(launcher.labels, "worker gone when the launcher finished")
        done = launcher.finished()
        result = finish_study(study, tune, parent_id)
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


class WorkersFailed(RuntimeError):
    """The workers stopped before the study reached its target."""


def build_workers_parser() -> argparse.ArgumentParser:
    parser = build_parser(
        prog="python -m training.workers",
        description="Run K tuning workers (processes) on one Optuna study and crown the best.",
    )
    add_worker_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_workers_parser().parse_args(argv)
    problem = argument_error(args) or one_device_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    _, worker_argv = split_argv(argv)
    tune = tune_config_from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        result = run(args, tune, worker_argv)
    except (LakeError, NoCompletedTrial, WorkersFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        failure = storage_failure(error)
        if failure is None:
            raise
        print(f"error: {storage_error(failure, tune.storage)}", file=sys.stderr)
        return 3
    print(" ".join(f"{key}={value:.4g}" for key, value in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
