"""Scale-out benchmarks: tuning throughput with K workers, and epochs saved by pruning.

    python benchmarks/bench_scaleout.py                    # both parts, defaults below
    python benchmarks/bench_scaleout.py --part workers --workers 1 2 4 --trials 12
    python benchmarks/bench_scaleout.py --part pruning --trials 24 --max-epochs 9

workers  `python -m training.workers --workers K` on a fresh journal study into which `--trials`
         copies of one fixed trial are queued, so every trial is the same work (2 x 64/32
         units, batch 1024, `--max-epochs` epochs, no pruning). Reported:
         completed trials per hour over the trial phase (first trial start to last trial end,
         from the study's own timestamps) and over the launcher's whole wall time (imports,
         study setup and the final test evaluation included). One torch thread per worker.

pruning  the same TPE study (same seed, same search space) run twice in one process, without
         a pruner and with Hyperband. Reported: epochs trained in all, the best validation RMSE,
         and the epochs each needed until its best-so-far first reached the target, the worse
         of the two final bests (so both reach it).

Data: a synthetic lake in the dbt layout (fares from a DC-meter-like rule plus N(0, 0.5)
noise; `scripts/synthetic_lake.py:write_lake`), written once under data/bench/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402
from optuna.storages.journal import JournalFileBackend, JournalStorage  # noqa: E402

from scripts.synthetic_lake import write_lake  # noqa: E402
from training import cli, tune  # noqa: E402
from training.study import DONE  # noqa: E402

FIXED_TRIAL = {
    "n_layers": 2,
    "n_units_l0": 64,
    "n_units_l1": 32,
    "batch_norm": True,
    "dropout": 0.0,
    "optimizer": "adamw",
    "lr": 3e-3,
    "batch_size": 1024,
}


def make_lake(root: Path, train_rows: int) -> Path:
    """trip_features + feature_stats with `train_rows` training rows, written once."""
    data = root / f"scaleout_{train_rows}" / "lake" / "trip_features"
    if not data.exists():
        files = 4
        rows = train_rows // files
        layout = {
            "train": [[rows] for _ in range(files)],
            "validation": [[train_rows // 10]],
            "test": [[train_rows // 10]],
        }
        write_lake(data.parent, layout, seed=3)
    return data


def journal_storage(path: str) -> JournalStorage:
    return JournalStorage(JournalFileBackend(path))


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_env() -> dict[str, str]:
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}


def bench_workers(data: Path, workers: int, trials: int, epochs: int) -> dict:
    """Wall time and trials/hour of K workers on `trials` identical queued trials."""
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        journal = str(Path(folder) / "optuna.journal")
        storage = journal_storage(journal)
        study = optuna.create_study(study_name="bench", storage=storage, direction="minimize")
        # K - 1 spares: workers that start a trial as the cap is reached run the same work.
        for _ in range(trials + workers - 1):
            study.enqueue_trial(FIXED_TRIAL)
        argv = [
            sys.executable, "-m", "training.workers",
            "--workers", str(workers),
            "--max-trials", str(trials),
            "--data", str(data),
            "--storage", journal,
            "--study-name", "bench",
            "--tracking-uri", f"sqlite:///{folder}/mlflow.db",
            "--max-epochs", str(epochs),
            "--patience", str(epochs),
            "--pruner", "none",
            "--max-retry", "0",
        ]  # fmt: skip
        load_before = os.getloadavg()[0]
        cpu_before = children_cpu_seconds()
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO, env=cli_env(), capture_output=True, text=True)
        wall = time.perf_counter() - start
        cpu = children_cpu_seconds() - cpu_before
        if done.returncode != 0:
            raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
        finished = study.get_trials(states=DONE)
        first = min(t.datetime_start for t in finished)
        last = max(t.datetime_complete for t in finished)
        phase = (last - first).total_seconds()
        return {
            "workers": workers,
            "load_before": round(load_before, 1),
            "trials": len(finished),
            "trial_phase_s": round(phase, 1),
            "wall_s": round(wall, 1),
            "trials_per_hour": round(len(finished) / phase * 3600),
            "trials_per_hour_wall": round(len(finished) / wall * 3600),
            # CPU seconds of the launcher and its workers, per trial: what K workers add in
            # work, whatever else the machine is running.
            "cpu_s_per_trial": round(cpu / len(finished), 1),
            "mean_trial_s": round(
                sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished)
                / len(finished),
                1,
            ),
        }


def epochs_of(trial: optuna.trial.FrozenTrial) -> int:
    """Epochs a trial trained: the pruning callback reports once per validated epoch."""
    return len(trial.intermediate_values)


def epochs_to_reach(trials: list[optuna.trial.FrozenTrial], target: float) -> int | None:
    """Epochs trained (in trial completion order) until the best-so-far is <= target."""
    spent, best = 0, float("inf")
    for trial in sorted(trials, key=lambda t: t.datetime_complete):
        spent += epochs_of(trial)
        if trial.state.name == "COMPLETE":
            best = min(best, trial.value)
        if best <= target:
            return spent
    return None


def bench_pruning(data: Path, trials: int, epochs: int, seed: int) -> dict:
    """The same seeded TPE study without a pruner and with Hyperband."""
    import torch

    torch.set_num_threads(1)
    studies = {}
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as folder:
        for pruner in ("none", "hyperband"):
            args = cli.tune_parser().parse_args(
                [
                    "--data", str(data),
                    "--storage", f"{folder}/{pruner}.journal",
                    "--study-name", pruner,
                    "--tracking-uri", f"sqlite:///{folder}/mlflow.db",
                    "--n-trials", str(trials),
                    "--max-epochs", str(epochs),
                    "--patience", str(epochs),  # only the pruner stops a trial early
                    "--pruner", pruner,
                    "--seed", str(seed),
                    "--no-progress",
                ]
            )  # fmt: skip
            start = time.perf_counter()
            tune.run(cli.tune_config(args))
            seconds = time.perf_counter() - start
            study = optuna.load_study(
                study_name=pruner, storage=journal_storage(f"{folder}/{pruner}.journal")
            )
            finished = [t for t in study.trials if t.state.is_finished()]
            studies[pruner] = (finished, study.best_value, seconds)
    target = max(best for _, best, _ in studies.values())
    rows = {}
    for pruner, (finished, best, seconds) in studies.items():
        rows[pruner] = {
            "trials": len(finished),
            "pruned": len([t for t in finished if t.state.name == "PRUNED"]),
            "epochs_total": sum(epochs_of(t) for t in finished),
            "best_val_rmse": round(best, 4),
            "epochs_to_target": epochs_to_reach(finished, target),
            "wall_s": round(seconds, 1),
        }
    return {"target_val_rmse": round(target, 4), "studies": rows}


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average at the end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("workers", "pruning", "both"), default="both")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--trials", type=int, default=None, help="default 8 / 24")
    parser.add_argument("--max-epochs", type=int, default=None, help="default 6 / 9")
    parser.add_argument("--repeat", type=int, default=1, help="workers part: runs per K")
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bench")
    args = parser.parse_args(argv)

    data = make_lake(args.out, args.train_rows)
    report: dict = {
        "date": dt.date.today().isoformat(),
        "command": " ".join(["python", "benchmarks/bench_scaleout.py", *(argv or sys.argv[1:])]),
        "train_rows": args.train_rows,
    }
    if args.part in ("workers", "both"):
        trials, epochs = args.trials or 8, args.max_epochs or 6
        report["workers"] = []
        for _ in range(args.repeat):  # interleaved, so slow spells of a shared machine spread
            for workers in args.workers:
                row = bench_workers(data, workers, trials, epochs)
                print(json.dumps(row), flush=True)
                report["workers"].append(row)
        base = max(r["trials_per_hour"] for r in report["workers"] if r["workers"] == 1)
        for row in report["workers"]:
            row["speedup_vs_best_1"] = round(row["trials_per_hour"] / base, 2)
    if args.part in ("pruning", "both"):
        report["pruning"] = bench_pruning(data, args.trials or 24, args.max_epochs or 9, args.seed)
        print(json.dumps(report["pruning"]), flush=True)
    report["machine"] = machine()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
