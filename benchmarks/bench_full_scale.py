"""The whole job at the real data's size, one command: raw rows generated once (reused), a
`dbt build` into a fresh lake, then one epoch of the published train split through the
training loader, beside raw pyarrow decode of the same columns of the same files.

    python benchmarks/bench_full_scale.py                        # 67.4 M raw rows
    python benchmarks/bench_full_scale.py --rows 1000000 --work /tmp/full

Raw files go to `<work>/raw_<rows>_s<seed>` (kept and reused: 13.8 GiB at 67.4 M rows); the
build's DuckDB file, lake and logs to `<work>/full_scale/` (replaced each run). Every stage is
its own process tree, measured for wall time, CPU seconds, peak RSS (the sum over the tree)
and, for the build, DuckDB's spill: the largest size its temporary folder reached. Printed as
a table and written to `<work>/full_scale/results.json`, with dbt's time per model and for
the tests, and the machine's load average before each stage.

Targets (issue 14): `dbt build` of 67.4 M rows in <= 5 min with peak RSS < 4 GB; the loader,
shuffled, float32, normalised, >= 0.7x raw pyarrow decode of the same columns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_sql_pipeline import (  # noqa: E402
    count_data_lines,
    dbt_timing,
    dbt_vars,
    ensure_raw,
    measure,
)

from scripts.dbt_subprocess import dbt_env, dbt_executable  # noqa: E402

FULL_SCALE_ROWS = 67_400_000  # the public DC data, 2015-01 to 2019-06
LOADER_CASES = ("loader", "raw_arrow")


class FolderSizeSampler(threading.Thread):
    """Polls the total size of the files under a folder; keeps the largest seen."""

    def __init__(self, folder: Path, interval_s: float = 0.5):
        super().__init__(daemon=True)
        self.folder, self.interval_s, self.peak_bytes = folder, interval_s, 0
        self._stop_event = threading.Event()

    def _size(self) -> int:
        total = 0
        for root, _, names in os.walk(self.folder):
            for name in names:
                with contextlib.suppress(OSError):  # DuckDB removed it meanwhile
                    total += os.stat(os.path.join(root, name)).st_size
        return total

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_bytes = max(self.peak_bytes, self._size())
            self._stop_event.wait(self.interval_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak_bytes


def stage_row(stage: str, run, rows: int, busy_s: float | None = None, **extra) -> dict:
    """One stage's measurements; rows/s over `busy_s` (the work itself, without the process's
    start-up and imports) when given, else over the wall time."""
    seconds = busy_s or run.wall_s
    return {
        "stage": stage,
        "returncode": run.returncode,
        "wall_s": round(run.wall_s, 1),
        "cpu_s": run.tree_cpu_s,
        "other_cpu_s": run.other_cpu_s,
        "peak_rss_gib": round(run.peak_tree_rss_bytes / 2**30, 2),
        "rows": rows,
        "rows_per_s": round(rows / seconds) if seconds else None,
        "load_average_1m_before": run.load_average_1m_before,
        "log": run.log,
        **extra,
    }


def build_stage(raw: Path, work: Path, rows: int, memory_limit: str) -> dict:
    """`dbt build` of every raw file into a fresh warehouse and lake under `work`."""
    env = dbt_env(work, DUCKDB_MEMORY_LIMIT=memory_limit)
    env.pop("DBT_TARGET", None)
    # DuckDB spills into `<database>.tmp` beside its file unless told otherwise.
    spill = FolderSizeSampler(Path(env["DUCKDB_PATH"] + ".tmp"))
    spill.start()
    command = [dbt_executable(), "build", "--vars", dbt_vars(raw, work / "lake")]
    run = measure("dbt_build", command, env, work / "logs" / "dbt_build.log", REPO)
    peak_spill = spill.stop()
    timing = dbt_timing(Path(env["DBT_TARGET_PATH"])) if run.returncode == 0 else None
    return stage_row(
        "dbt build", run, rows, peak_spill_gib=round(peak_spill / 2**30, 2), dbt_timing=timing
    )


def loader_stage(case: str, work: Path, batch_size: int) -> dict:
    """One epoch of the published train split in its own process (`epoch` below)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "epoch",
        "--case",
        case,
        "--lake",
        str(work / "lake"),
        "--batch-size",
        str(batch_size),
    ]
    log = work / "logs" / f"{case}.log"
    run = measure(case, command, dbt_env(work), log, REPO)
    lines = log.read_text().splitlines() if run.returncode == 0 else []
    result = json.loads(lines[-1]) if lines else {}
    stage = "loader epoch (shuffled, float32, normalised)" if case == "loader" else case
    return stage_row(stage, run, result.pop("rows", 0), busy_s=result.get("epoch_s"), **result)


def epoch(case: str, lake: str, batch_size: int) -> dict:
    """Read the lake's published train split once: the training loader, or raw pyarrow."""
    import pyarrow.parquet as pq

    from lakehouse.builds import pin_build
    from training.data import ParquetBatches
    from training.lake import FEATURES, LABEL, discover_split, load_feature_stats

    build = pin_build(f"{lake.rstrip('/')}/trip_features")
    files = discover_split(build, "train")
    rows, started = 0, time.perf_counter()
    if case == "raw_arrow":
        for part in files.parts:
            with files.filesystem.open_input_file(part.path) as handle:
                parquet = pq.ParquetFile(handle)
                for group in range(parquet.num_row_groups):
                    rows += parquet.read_row_group(group, columns=[*FEATURES, LABEL]).num_rows
    else:
        stats = load_feature_stats(build)
        loader = ParquetBatches(files, stats, batch_size, shuffle=True, seed=0)
        loader.set_epoch(0)
        for _, _, weights in loader:
            rows += int(weights.numpy().sum())
    return {"rows": rows, "epoch_s": round(time.perf_counter() - started, 2)}


def print_table(stages: list[dict]) -> None:
    # The loader stages' rows/s is over the epoch alone (epoch_s in results.json), not the
    # process's start-up.
    print("| stage | wall s | CPU s | other CPU s | peak RSS GiB | spill GiB | rows | rows/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in stages:
        spill = s.get("peak_spill_gib", "")
        print(
            f"| {s['stage']} | {s['wall_s']} | {s['cpu_s']} | {s['other_cpu_s']} | "
            f"{s['peak_rss_gib']} | {spill} | {s['rows']:,} | {s['rows_per_s'] or 0:,} |"
        )
    timing = next((s.get("dbt_timing") for s in stages if s.get("dbt_timing")), None)
    if timing:
        models = ", ".join(f"{name} {sec:.0f} s" for name, sec in timing["models_s"].items())
        print(f"# dbt models: {models}; data tests {timing['data_tests_s']:.0f} s")
    by_stage = {s["stage"].split(" (")[0]: s for s in stages}
    if "loader epoch" in by_stage and "raw_arrow" in by_stage:
        ratio = by_stage["loader epoch"]["rows_per_s"] / by_stage["raw_arrow"]["rows_per_s"]
        print(f"# loader / raw pyarrow decode, same files, same run: {ratio:.2f}x (target 0.7x)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=FULL_SCALE_ROWS, help="raw rows")
    parser.add_argument("--seed", type=int, default=42, help="generator seed")
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench", help="work folder")
    parser.add_argument("--memory-limit", default="3GB", help="DuckDB memory_limit of the build")
    parser.add_argument("--batch-size", type=int, default=65_536, help="loader batch size")
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("epoch", help="one epoch of the published train split (internal)")
    one.add_argument("--case", choices=LOADER_CASES, required=True)
    one.add_argument("--lake", required=True)
    one.add_argument("--batch-size", type=int, default=65_536)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "epoch":
        print(json.dumps(epoch(args.case, args.lake, args.batch_size)))
        return 0
    raw = args.work / f"raw_{args.rows}_s{args.seed}"
    started = time.perf_counter()
    ensure_raw(raw, args.rows, args.seed)
    generated_s = round(time.perf_counter() - started, 1)
    lines = count_data_lines(raw)
    work = args.work / "full_scale"
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    stages = [build_stage(raw, work, lines, args.memory_limit)]
    if stages[0]["returncode"] == 0:
        stages += [loader_stage(case, work, args.batch_size) for case in LOADER_CASES]
    print(f"# {lines:,} raw data lines in {raw} (generate or reuse: {generated_s} s)")
    print(f"# {os.cpu_count()} CPUs; load average now {os.getloadavg()[0]:.2f}")
    print_table(stages)
    results = {"raw": str(raw), "raw_lines": lines, "stages": stages}
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"# results: {work / 'results.json'}")
    return 0 if all(s["returncode"] == 0 for s in stages) else 1


if __name__ == "__main__":
    sys.exit(main())
