"""Batch-scoring throughput: `python -m training.predict` against the model's own network call.

    python benchmarks/bench_predict.py                       # 1 M and 10 M rows
    python benchmarks/bench_predict.py --rows 1000000 --out /tmp/h10c

Synthetic trip_features lakes (tests/training/conftest.py's `write_lake`: train in 8 files,
validation and test in one each, row groups of 122,880 rows as DuckDB writes them, so that the
row groups are the same size whatever the lake's; published like a dbt build) and a registry
holding a default-sized FareRegressor (hidden 128, 64, batch norm; random weights), logged by
the current `training.tracking.log_fare_model`, are made under --out once and reused. The
registry's folder is named after a hash of the code that logs the model (`registry-<hash>`), so
a registry logged by older model code is never reused. Every case runs in its own subprocess,
so its wall time, CPU seconds (user + system) and peak RSS (`wait4`) are its own. Cases, side
by side in one run:

  predict   the real command on the lake: `python -m training.predict --data <lake>`
            (read, score, write zstd Parquet, publish dc_taxi.fare_predictions), whole process,
            its defaults (torch on all cores but one)
  limit     the model's `predict_matrix` as logged (the torch.export program, BatchNorm folded
            into the Linear layers, run on 8,192-row slices) on in-memory float32 batches of
            --batch-rows, as many rows: the issue's limit; its loop alone (model load
            excluded). Twice: torch on 1 thread and on every core; the faster of the two is
            the denominator of "x limit"
  stages    training.predict's own functions one after another (no reader/writer threads),
            each timed: read/decode, feature matrix, model, Arrow build, Parquet write

rows/s of predict is rows / the command's wall time (imports, model load and publish
included); "marginal" is the rate between the two lake sizes, without the fixed costs.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL_NAME = "bench-fare"
MODEL_URI = f"models:/{MODEL_NAME}@champion"
BATCH_ROWS = 1 << 18  # training.predict's default
TRAIN_FILES = 8
SHARES = {"train": 0.85, "validation": 0.075, "test": 0.075}  # dbt's default split
ROW_GROUP = 122_880  # DuckDB's (dbt-duckdb's) row group
# What the logged model is made of: a change to any of these makes a new registry.
MODEL_CODE = (
    "training/model.py",
    "training/fare_pyfunc.py",
    "training/tracking.py",
    "training/lake.py",
    "scripts/random_fare_models.py",
)


def row_groups(rows: int) -> list[int]:
    return [min(ROW_GROUP, rows - start) for start in range(0, rows, ROW_GROUP)]


def layout_for(rows: int) -> dict[str, list[list[int]]]:
    """Train in TRAIN_FILES files, validation and test one file each; ROW_GROUP-row groups."""
    train = round(rows * SHARES["train"])
    validation = round(rows * SHARES["validation"])
    per_file = [train // TRAIN_FILES + (i < train % TRAIN_FILES) for i in range(TRAIN_FILES)]
    return {
        "train": [row_groups(n) for n in per_file],
        "validation": [row_groups(validation)],
        "test": [row_groups(rows - train - validation)],
    }


def make_lake(out: Path, rows: int) -> Path:
    """The trip_features location of a published synthetic lake of `rows` rows (made once)."""
    folder = out / f"lake-{rows}-rg{ROW_GROUP}"
    data = folder / "lake" / "trip_features"
    if (folder / "done").exists():
        return data
    import shutil

    from scripts.synthetic_lake import write_lake

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    write_lake(folder / "lake", layout_for(rows), label="fare", seed=rows)
    (folder / "done").write_text("")
    seconds = time.perf_counter() - started
    print(f"# wrote the {rows:,}-row lake in {seconds:.0f} s", file=sys.stderr, flush=True)
    return data


def model_code_hash() -> str:
    digest = hashlib.sha256()
    for name in MODEL_CODE:
        digest.update(name.encode() + b"\0" + (REPO / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def make_registry(out: Path) -> str:
    """Tracking URI of a registry whose bench-fare@champion is a default FareRegressor, logged
    by the current model code (one registry folder per hash of MODEL_CODE)."""
    folder = out / f"registry-{model_code_hash()}"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if (folder / "done").exists():
        return uri
    import contextlib
    import shutil

    from scripts.random_fare_models import register_fare_model

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with contextlib.chdir(folder):  # the run's artifacts go to ./mlruns
        register_fare_model(uri, MODEL_NAME, seed=0, alias="champion")  # hidden (128, 64), BN
    (folder / "done").write_text("")
    print(f"# logged {MODEL_URI} into {folder}", file=sys.stderr, flush=True)
    return uri


# ---- the in-process cases (run as `bench_predict.py --case NAME ...` in a subprocess) ----


def default_threads() -> int:
    """training.predict's default: every core but one (the reader and writer have that one)."""
    return max(1, (os.cpu_count() or 1) - 1)


def load_model(tracking_uri: str, threads: int):
    """The champion as training.predict loads it, torch on `threads` threads; checks that it
    was logged by the current code (no BatchNorm in the program, sliced `predict_matrix`)."""
    import mlflow
    import torch

    from training.predict import resolve_model

    torch.set_num_threads(threads)
    mlflow.set_tracking_uri(tracking_uri)
    model = resolve_model(MODEL_URI)
    logged = model.predict_matrix.__self__
    buffers = [name for name, _ in logged.program.named_buffers()]
    if any(name.endswith("running_mean") for name in buffers):
        raise RuntimeError(f"{MODEL_URI} still has BatchNorm layers: logged by old model code")
    if not hasattr(sys.modules[type(logged).__module__], "SLICE_ROWS"):
        raise RuntimeError(f"{MODEL_URI}'s predict_matrix does not slice: old fare_pyfunc.py")
    return model


def limit_case(args) -> dict:
    """The model's predict_matrix on in-memory float32 batches: the ceiling for training.predict."""
    import numpy as np

    model = load_model(args.tracking_uri, args.threads)
    rng = np.random.default_rng(0)
    batches = []
    left = args.rows
    while left > 0:
        n = min(args.batch_rows, left)
        batches.append(rng.normal(size=(n, len(model.features))).astype(np.float32))
        left -= n
    model.predict_matrix(batches[0][:1024])  # first call outside the clock
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        model.predict_matrix(batch)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def stages_case(args) -> dict:
    """training.predict's scoring loop, serial, each stage timed (no reader/writer threads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakehouse.builds import pin_build
    from training import predict

    model = load_model(args.tracking_uri, default_threads())
    build = pin_build(args.data, marts=("trip_features",))
    folder = Path(args.scratch)
    folder.mkdir(parents=True, exist_ok=True)
    stages = dict.fromkeys(("read", "matrix", "model", "arrow", "write"), 0.0)
    cpu = dict.fromkeys(stages, 0.0)
    writers: dict[str, pq.ParquetWriter] = {}
    batches = predict.lake_batches(build, str(folder), args.batch_rows, model.features)
    rows = 0

    def clock(stage: str, started: tuple[float, float]) -> tuple[float, float]:
        now = (time.perf_counter(), time.process_time())
        stages[stage] += now[0] - started[0]
        cpu[stage] += now[1] - started[1]
        return now

    started = (time.perf_counter(), time.process_time())
    first = started
    for path, batch, extra in batches:
        started = clock("read", started)
        matrix = predict.feature_matrix(batch, model.features)
        started = clock("matrix", started)
        fares = model.predict_matrix(matrix)
        started = clock("model", started)
        columns = {
            name: batch.column(name) for name in predict.PASSTHROUGH if name in batch.schema.names
        }
        columns.update(extra(batch.num_rows))
        columns["predicted_fare"] = pa.array(fares.astype("float64"))
        columns["model_name"] = predict.constant(model.name, batch.num_rows, pa.string())
        columns["model_version"] = predict.constant(model.version, batch.num_rows, pa.string())
        table = pa.table(columns)
        started = clock("arrow", started)
        if path not in writers:
            for writer in writers.values():
                writer.close()
            writers = {path: predict.open_writer(path, table.schema)}
        writers[path].write_table(table, row_group_size=1 << 20)
        started = clock("write", started)
        rows += batch.num_rows
    for writer in writers.values():
        writer.close()
    clock("write", started)
    return {
        "rows": rows,
        "wall_s": time.perf_counter() - first[0],
        "cpu_s": time.process_time() - first[1],
        "stages_wall_s": stages,
        "stages_cpu_s": cpu,
    }


CASES = {"limit": limit_case, "stages": stages_case}


def setup_case(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tracking_uri = make_registry(out)
    lakes = {rows: str(make_lake(out, rows)) for rows in args.rows}
    return {"tracking_uri": tracking_uri, "lakes": lakes}


def run_case_here(args) -> None:
    if args.case == "setup":
        print(json.dumps(setup_case(args)), flush=True)
        return
    args.rows = args.rows[0]
    print(json.dumps(CASES[args.case](args)), flush=True)


# ---- the driver ----


def measured(command: list[str], env: dict | None = None) -> dict:
    """Run `command`; its wall time, CPU seconds, peak RSS (MiB) and its last stdout line."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
        "last_line": stdout.strip().splitlines()[-1] if stdout.strip() else "",
    }


def machine_line() -> str:
    memory = "?"
    if Path("/proc/meminfo").exists():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 2**20:.1f} GiB"
    return (
        f"{platform.node() or 'host'}: nproc {os.cpu_count()}, memory {memory}, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"torch {importlib.metadata.version('torch')}, pyarrow "
        f"{importlib.metadata.version('pyarrow')}"
    )


def load_line() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def drive(args) -> int:
    here = [sys.executable, str(Path(__file__).resolve())]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # In a child: this process stays small, so its children's peak RSS is their own (a forked
    # child starts with its parent's RSS, and ru_maxrss keeps that high-water mark over exec).
    rows = [str(n) for n in args.rows]
    setup = subprocess.run(
        [*here, "--case", "setup", "--out", args.out, "--rows", *rows],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    made = json.loads(setup.stdout.strip().splitlines()[-1])
    tracking_uri, lakes = made["tracking_uri"], {int(n): d for n, d in made["lakes"].items()}
    out = Path(args.out)
    header = {
        "machine": machine_line(),
        "date": f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "registry": tracking_uri,
        "load before": load_line(),
    }
    for key, value in header.items():
        print(f"# {key}: {value}", flush=True)
    driver_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# driver peak RSS {driver_mib:.0f} MiB (a floor under the children's)", flush=True)
    results = []
    all_cores = os.cpu_count() or 1

    def record(case: str, command: str, rows: int, result: dict, rate_wall: float) -> None:
        result.update(case=case, command=command, rows=rows, rate=rows / rate_wall)
        results.append(result)
        print(json.dumps(result), flush=True)

    for rows, data in lakes.items():
        command = [sys.executable, "-m", "training.predict", "--data", str(data)]
        command += ["--model", MODEL_URI, "--tracking-uri", tracking_uri, "--no-progress"]
        command += ["--batch-rows", str(args.batch_rows)]
        result = measured(command, env)
        shown = f"python -m training.predict --data {data} --no-progress"
        record("predict", shown, rows, result, result["wall_s"])

        case = [*here, "--tracking-uri", tracking_uri, "--rows", str(rows)]
        case += ["--batch-rows", str(args.batch_rows), "--data", str(data)]
        variants = [
            (
                "limit",
                f"predict_matrix as logged, {args.batch_rows:,}-row float32 batches, "
                "1 torch thread",
                ["--threads", "1"],
            ),
            (
                "limit",
                f"the same, {all_cores} torch threads (every core)",
                ["--threads", str(all_cores)],
            ),
        ]
        if rows == max(lakes) and not args.skip_stages:
            variants.append(("stages", "training.predict's stages, serial", []))
        for name, label, extra in variants:
            scratch = ["--scratch", str(out / f"{name}-{rows}")]
            result = measured([*case, *extra, *scratch, "--case", name], env)
            inner = json.loads(result["last_line"])
            result.update(inner, process_wall_s=result["wall_s"], process_cpu_s=result["cpu_s"])
            result.update(wall_s=inner["wall_s"], cpu_s=inner["cpu_s"])
            record(name, label, rows, result, inner["wall_s"])
    header["load after"] = load_line()
    print(f"# load after: {header['load after']}", flush=True)
    print(table(results, header))
    return 0


def table(results: list[dict], header: dict[str, str]) -> str:
    limits: dict[int, dict] = {}
    for r in results:  # the faster limit of each size is the denominator
        if r["case"] == "limit" and r["rate"] > limits.get(r["rows"], {"rate": 0})["rate"]:
            limits[r["rows"]] = r
    predicts = {r["rows"]: r for r in results if r["case"] == "predict"}
    lines = [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        "- x limit: rows/s over the faster `limit` row of the same size (marked *); limit and "
        "stages time their loop alone, predict the whole process",
        "",
        "| case | command | rows | wall s | CPU s | rows/s | x limit | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        wall, cpu = r["wall_s"], r["cpu_s"]
        ratio = r["rate"] / limits[r["rows"]]["rate"] if r["rows"] in limits else float("nan")
        mark = " *" if limits.get(r["rows"]) is r else ""
        lines.append(
            f"| {r['case']}{mark} | `{r['command']}` | {r['rows']:,} | {wall:.2f} | {cpu:.2f} | "
            f"{r['rate']:,.0f} | {ratio:.2f} | {r['rss_mib']:.0f} |"
        )
    if len(predicts) >= 2:
        small, large = sorted(predicts)[0], sorted(predicts)[-1]
        extra = large - small
        seconds = predicts[large]["wall_s"] - predicts[small]["wall_s"]
        cpu = predicts[large]["cpu_s"] - predicts[small]["cpu_s"]
        lines.append(
            f"\nmarginal training.predict rate {small:,} -> {large:,} rows: "
            f"{extra / seconds:,.0f} rows/s of wall, {extra / cpu:,.0f} rows per CPU second; "
            f"peak RSS {predicts[small]['rss_mib']:.0f} -> {predicts[large]['rss_mib']:.0f} MiB"
        )
    fixed = [r for r in results if r["case"] == "limit"]
    if fixed:
        walls = [r["process_wall_s"] - r["wall_s"] for r in fixed]
        cpus = [r["process_cpu_s"] - r["cpu_s"] for r in fixed]
        lines.append(
            f"\nimports + model load + exit (the limit processes outside their loop): "
            f"{min(walls):.1f}-{max(walls):.1f} s wall, {min(cpus):.1f}-{max(cpus):.1f} CPU s"
        )
    for r in results:
        if r["case"] == "stages":
            total = sum(r["stages_wall_s"].values())
            lines.append(f"\nstages of training.predict, serial, {r['rows']:,} rows:\n")
            lines.append("| stage | wall s | CPU s | share of wall |")
            lines.append("| --- | ---: | ---: | ---: |")
            for name, wall in r["stages_wall_s"].items():
                cpu = r["stages_cpu_s"][name]
                lines.append(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / total:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--out", default="/tmp/h10c", help="scratch folder (default /tmp/h10c)")
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS)
    parser.add_argument("--skip-stages", action="store_true", help="no per-stage timing")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=["setup", *CASES], help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        run_case_here(args)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
