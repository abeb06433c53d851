"""Batch-scoring throughput: `python -m training.predict` against the bare exported network.

    python benchmarks/bench_predict.py                       # 1 M and 10 M rows
    python benchmarks/bench_predict.py --rows 1000000 --out /tmp/h10b

Synthetic trip_features lakes (tests/training/conftest.py's `write_lake`: one row group of
~1 M rows per file, published like a dbt build) and a registry holding a default-sized
FareRegressor (hidden 128, 64, batch norm; random weights) are made under --out once and
reused. Every case runs in its own subprocess, so its wall time, CPU seconds (user + system)
and peak RSS (`wait4`) are its own. Cases, side by side in one run:

  predict   the real command on the lake: `python -m training.predict --data <lake>`
            (read, score, write zstd Parquet, publish dc_taxi.fare_predictions), whole process
  limit     the model's `predict_matrix` (the torch.export program as logged) on in-memory
            float32 batches of --batch-rows, as many rows, torch on every core: the issue's
            limit; its loop alone (model load excluded). Two more rows show what the network
            itself could do: the same in --chunk-rows slices on one torch thread, and that with
            each BatchNorm folded into the Linear before it
  fast      a prototype of training.predict's loop with slices + no dictionary encoding for
            trip_key (see `fast_case`), same output files, not published; its loop alone
  stages    training.predict's stages one after another (no reader/writer threads), each
            timed: read/decode, feature matrix, model, Arrow build, Parquet write

rows/s of predict is rows / the command's wall time (imports, model load and publish
included); "marginal" is the rate between the two lake sizes, without the fixed costs.
"""

from __future__ import annotations

import argparse
import datetime
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


def layout_for(rows: int) -> dict[str, list[list[int]]]:
    """Train in TRAIN_FILES files, validation and test one file each; one row group per file."""
    train = round(rows * SHARES["train"])
    validation = round(rows * SHARES["validation"])
    per_file = [train // TRAIN_FILES + (i < train % TRAIN_FILES) for i in range(TRAIN_FILES)]
    return {
        "train": [[n] for n in per_file],
        "validation": [[validation]],
        "test": [[rows - train - validation]],
    }


def make_lake(out: Path, rows: int) -> Path:
    """The trip_features location of a published synthetic lake of `rows` rows (made once)."""
    folder = out / f"lake-{rows}"
    data = folder / "lake" / "trip_features"
    if (folder / "done").exists():
        return data
    import shutil

    from tests.training.conftest import write_lake

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    write_lake(folder / "lake", layout_for(rows), label="fare", seed=rows)
    (folder / "done").write_text("")
    print(f"# wrote the {rows:,}-row lake in {time.perf_counter() - started:.0f} s", flush=True)
    return data


def make_registry(out: Path) -> str:
    """Tracking URI of a registry whose bench-fare@champion is a default FareRegressor."""
    folder = out / "registry"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if (folder / "done").exists():
        return uri
    import contextlib
    import shutil

    from tests.fare_models import register_fare_model

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with contextlib.chdir(folder):  # the run's artifacts go to ./mlruns
        register_fare_model(uri, MODEL_NAME, seed=0, alias="champion")  # hidden (128, 64), BN
    (folder / "done").write_text("")
    return uri


# ---- the in-process cases (run as `bench_predict.py --case NAME ...` in a subprocess) ----


def load_model(tracking_uri: str):
    import mlflow
    import torch

    from training.predict import resolve_model

    torch.set_num_threads(os.cpu_count() or 1)  # as training.predict does
    mlflow.set_tracking_uri(tracking_uri)
    return resolve_model(MODEL_URI)


def chunked(predict_matrix, chunk_rows: int):
    """`predict_matrix` on `chunk_rows`-row slices: the layers' outputs stay in cache."""
    import numpy as np

    def scored(x):
        if not chunk_rows or len(x) <= chunk_rows:
            return predict_matrix(x)
        out = np.empty(len(x), np.float32)
        for start in range(0, len(x), chunk_rows):
            out[start : start + chunk_rows] = predict_matrix(x[start : start + chunk_rows])
        return out

    return scored


def folded_program(model):
    """The logged network with each BatchNorm folded into the Linear before it (eval mode):
    what `training.model.export_predictor` could export instead (same numbers to 1e-5)."""
    import torch

    from training.predict import resolve_model

    program = resolve_model(MODEL_URI).predict_matrix.__self__.program
    state = {**dict(program.named_parameters()), **dict(program.named_buffers())}
    names = sorted({name.split(".")[0] for name in state}, key=int)
    layers = []
    i = 0
    while i < len(names):
        weight, bias = state[f"{names[i]}.weight"], state[f"{names[i]}.bias"]
        norm = names[i + 1] if i + 1 < len(names) else None
        if norm is not None and f"{norm}.running_mean" in state:
            scale = state[f"{norm}.weight"] / torch.sqrt(state[f"{norm}.running_var"] + 1e-5)
            weight = weight * scale[:, None]
            bias = (bias - state[f"{norm}.running_mean"]) * scale + state[f"{norm}.bias"]
            i += 1
        layers.append((weight.detach().contiguous(), bias.detach().contiguous()))
        i += 1

    def predict_matrix(x):
        with torch.inference_mode():
            h = torch.from_numpy(x)
            for j, (weight, bias) in enumerate(layers):
                h = torch.addmm(bias, h, weight.T)
                if j < len(layers) - 1:
                    h = h.relu_()
            return h.flatten().numpy()

    return predict_matrix


def limit_case(args) -> dict:
    """The bare network on in-memory float32 batches: the ceiling for training.predict."""
    import numpy as np
    import torch

    model = load_model(args.tracking_uri)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    predict_matrix = model.predict_matrix
    if args.fold:
        predict_matrix = folded_program(model)
        probe = np.random.default_rng(1).normal(size=(4096, 8)).astype(np.float32)
        np.testing.assert_allclose(
            predict_matrix(probe), model.predict_matrix(probe), rtol=1e-4, atol=1e-4
        )
    predict_matrix = chunked(predict_matrix, args.chunk_rows)
    rng = np.random.default_rng(0)
    batches = []
    left = args.rows
    while left > 0:
        n = min(args.batch_rows, left)
        batches.append(rng.normal(size=(n, len(model.features))).astype(np.float32))
        left -= n
    predict_matrix(batches[0][:1024])  # first call outside the clock
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        predict_matrix(batch)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def stages_case(args) -> dict:
    """training.predict's scoring loop, serial, each stage timed (no reader/writer threads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakehouse.builds import pin_build
    from training import predict

    model = load_model(args.tracking_uri)
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
            writers[path] = pq.ParquetWriter(
                path, table.schema, compression="zstd", store_schema=False
            )
        writers[path].write_table(table, row_group_size=1 << 20)
        for writer in [w for p, w in writers.items() if p != path]:
            writer.close()
        writers = {path: writers[path]}
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


LOW_CARDINALITY = ["split", "model_name", "model_version", "lake_snapshot_id"]


def fast_case(args) -> dict:
    """training.predict's loop with two changes, same output files (not published):

    1. the network runs on --chunk-rows slices of each batch, torch on --threads threads
       (default 1: the reader and the writer thread have the other core);
    2. Parquet dictionary encoding only for the constant columns, not for trip_key (unique
       32-hex strings: the dictionary is built, overflows and is thrown away for every page).
    """
    import queue
    import threading

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from lakehouse.builds import pin_build
    from training import predict

    model = load_model(args.tracking_uri)
    torch.set_num_threads(args.threads or 1)
    predict_matrix = chunked(model.predict_matrix, args.chunk_rows)
    build = pin_build(args.data, marts=("trip_features",))
    folder = Path(args.scratch)
    folder.mkdir(parents=True, exist_ok=True)
    jobs: queue.Queue = queue.Queue(maxsize=2)

    def write() -> None:
        writers: dict[str, pq.ParquetWriter] = {}
        while (job := jobs.get()) is not None:
            path, table = job
            if path not in writers:
                for writer in writers.values():
                    writer.close()
                writers = {
                    path: pq.ParquetWriter(
                        path,
                        table.schema,
                        compression="zstd",
                        use_dictionary=LOW_CARDINALITY,
                        store_schema=False,
                    )
                }
            writers[path].write_table(table, row_group_size=1 << 20)
        for writer in writers.values():
            writer.close()

    writer = threading.Thread(target=write)
    wall, cpu = time.perf_counter(), time.process_time()
    writer.start()
    rows = 0
    batches = predict.lake_batches(build, str(folder), args.batch_rows, model.features)
    for path, batch, extra in predict.prefetched(batches):
        fares = predict_matrix(predict.feature_matrix(batch, model.features))
        columns = {"trip_key": batch.column("trip_key"), **extra(batch.num_rows)}
        columns["predicted_fare"] = pa.array(fares.astype("float64"))
        columns["model_name"] = predict.constant(model.name, batch.num_rows, pa.string())
        columns["model_version"] = predict.constant(model.version, batch.num_rows, pa.string())
        jobs.put((path, pa.table(columns)))
        rows += batch.num_rows
    jobs.put(None)
    writer.join()
    return {"rows": rows, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


CASES = {"limit": limit_case, "stages": stages_case, "fast": fast_case}


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
        f"{importlib.metadata.version('pyarrow')}, "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
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
    print(f"# {machine_line()}", flush=True)
    print(f"# before: {load_line()}", flush=True)
    driver_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# driver peak RSS {driver_mib:.0f} MiB (a floor under the children's)", flush=True)
    results = []

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
        chunk = ["--chunk-rows", str(args.chunk_rows), "--threads", "1"]
        variants = [
            (
                "limit",
                f"predict_matrix, {args.batch_rows:,}-row float32 batches",
                ["--chunk-rows", "0"],
            ),
            ("limit", f"the same in {args.chunk_rows:,}-row slices, 1 torch thread", chunk),
            ("limit", "the same, BatchNorm folded into Linear", [*chunk, "--fold"]),
            ("fast", "prototype: slices + no dictionary for trip_key", chunk),
        ]
        if rows == max(lakes) and not args.skip_stages:
            variants.append(("stages", "training.predict's stages, serial", ["--chunk-rows", "0"]))
        for name, label, extra in variants:
            scratch = ["--scratch", str(out / f"{name}-{rows}")]
            result = measured([*case, *extra, *scratch, "--case", name], env)
            inner = json.loads(result["last_line"])
            result.update(inner, process_wall_s=result["wall_s"], process_cpu_s=result["cpu_s"])
            result.update(wall_s=inner["wall_s"], cpu_s=inner["cpu_s"])
            record(name, label, rows, result, inner["wall_s"])
    print(f"# after: {load_line()}", flush=True)
    print(table(results))
    return 0


def table(results: list[dict]) -> str:
    limits = {}
    for r in results:
        if r["case"] == "limit":
            limits.setdefault(r["rows"], r)  # the first: the program as logged
    predicts = {r["rows"]: r for r in results if r["case"] == "predict"}
    lines = [
        "| case | command | rows | wall s | CPU s | rows/s | x limit | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        wall, cpu = r["wall_s"], r["cpu_s"]
        ratio = r["rate"] / limits[r["rows"]]["rate"] if r["rows"] in limits else float("nan")
        lines.append(
            f"| {r['case']} | `{r['command']}` | {r['rows']:,} | {wall:.2f} | {cpu:.2f} | "
            f"{r['rate']:,.0f} | {ratio:.2f} | {r['rss_mib']:.0f} |"
        )
    if len(predicts) >= 2:
        small, large = sorted(predicts)[0], sorted(predicts)[-1]
        extra = large - small
        seconds = predicts[large]["wall_s"] - predicts[small]["wall_s"]
        lines.append(
            f"\nmarginal training.predict rate {small:,} -> {large:,} rows: "
            f"{extra / seconds:,.0f} rows/s; peak RSS {predicts[small]['rss_mib']:.0f} -> "
            f"{predicts[large]['rss_mib']:.0f} MiB"
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
    parser.add_argument("--out", default="/tmp/h10b", help="scratch folder (default /tmp/h10b)")
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS)
    parser.add_argument("--skip-stages", action="store_true", help="no per-stage timing")
    parser.add_argument(
        "--chunk-rows", type=int, default=8192, help="network slice of the chunked cases"
    )
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fold", action="store_true", help=argparse.SUPPRESS)
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
