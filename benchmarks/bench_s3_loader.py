"""Streaming trip_features from S3 (a local SeaweedFS) against local disk, in rows per second.

    python -m benchmarks.bench_s3_loader                  # 4 M raw rows, 5 epochs
    python -m benchmarks.bench_s3_loader --rows 500000 --epochs 2

The lake is the real pipeline's output: the synthetic generator writes raw files, `dbt build`
(local DuckDB target) writes trip_features and feature_stats, and the same Parquet files are
copied to a local S3 server started for the run. Both sources are then read the way training
reads them, in one process:

  loader     training.data.ParquetBatches over the train split: 9 columns row group by row
             group, normalised float32, shuffled, padded batches (what `training.train`
             streams when a split does not fit the resident budget)
  row_groups pyarrow alone: ParquetFile.read_row_group of the same 9 columns, nothing else

Each case runs --epochs epochs; the first epoch's rate (files opened, footers read), the
median and the best are reported, and the S3 / local ratio of the medians. Everything (raw
files, lake, S3 data) lives under --work-dir and is reused by later runs with the same --rows.
Target: S3 at least 0.5x local disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lakehouse.builds import PinnedBuild, pin_build
from lakehouse.catalog import open_catalog
from lakehouse.publish import publish_folders
from scripts import s3_server
from scripts.dbt_subprocess import dbt_env, dbt_executable
from training.data import COLUMNS, TRAINING_MARTS, ParquetBatches
from training.lake import discover_split, load_feature_stats

REPO = Path(__file__).resolve().parents[1]
BUCKET = "bench"
CASES = ("loader", "row_groups")


def build_lake(work: Path, rows: int) -> Path:
    """Raw files -> `dbt build` -> <work>/lake; skipped when a lake for `rows` exists."""
    lake, marker = work / "lake", work / f"lake-{rows}.done"
    if marker.exists():
        return lake
    shutil.rmtree(work / "raw", ignore_errors=True)
    shutil.rmtree(lake, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "scripts.generate_raw", "--rows", str(rows), "--months",
         "2015-01:2016-12", "--out", str(work / "raw"), "--quiet"],
        cwd=REPO,
        check=True,
    )  # fmt: skip
    env = dbt_env(work)
    dbt_vars = json.dumps({"raw_path": str(work / "raw"), "lake_path": str(lake)})
    dbt = dbt_executable()
    subprocess.run(
        [dbt, "build", "--target", "local", "--vars", dbt_vars, "--quiet"],
        cwd=REPO,
        env=env,
        check=True,
    )
    marker.touch()
    return lake


def upload_lake(lake: Path, server: s3_server.RunningServer, catalog) -> str:
    """Copy the local lake's published trip_features and feature_stats files to
    s3://bench/lake and publish them there as the same build, in `catalog`; returns the URI."""
    identity = s3_server.server_identity(Path(server.data_dir))
    filesystem = pafs.S3FileSystem(
        endpoint_override=server.endpoint.removeprefix("http://"),
        scheme="http",
        access_key=identity.access_key,
        secret_key=identity.secret_key,
        region=s3_server.REGION,
    )
    build = pin_build(str(lake / "trip_features"), marts=TRAINING_MARTS)
    remote = f"s3://{BUCKET}/lake"
    folders = {}
    for mart in TRAINING_MARTS:
        local = lake / mart / "data" / build.invocation_id / "mart"
        folders[mart] = f"{remote}/{mart}/data/{build.invocation_id}"
        pafs.copy_files(
            str(local),
            folders[mart].removeprefix("s3://"),
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=filesystem,
        )
    publish_folders(
        remote, build.invocation_id, folders, {"trip_features": "split"}, catalog=catalog
    )
    return remote


def pinned(data: str, catalog) -> PinnedBuild:
    return pin_build(f"{data}/trip_features", marts=TRAINING_MARTS, catalog=catalog)


def run_loader(data: str, catalog, epochs: int, batch_size: int) -> list[tuple[int, float]]:
    """(rows, seconds) per epoch of ParquetBatches over the train split."""
    build = pinned(data, catalog)
    files = discover_split(build, "train")
    stats = load_feature_stats(build)
    dataset = ParquetBatches(files, stats, batch_size, shuffle=True, seed=0)
    results = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        started, rows = time.perf_counter(), 0.0
        for _, _, weights in dataset:
            rows += float(weights.sum())
        results.append((int(rows), time.perf_counter() - started))
    return results


def run_row_groups(data: str, catalog, epochs: int) -> list[tuple[int, float]]:
    """(rows, seconds) per epoch of a bare pyarrow row-group read loop over the train split."""
    results = []
    for _ in range(epochs):
        started, rows = time.perf_counter(), 0
        files = discover_split(pinned(data, catalog), "train")
        for part in files.parts:
            with files.filesystem.open_input_file(part.path) as handle:
                parquet_file = pq.ParquetFile(handle, pre_buffer=True)
                for group in range(parquet_file.num_row_groups):
                    rows += parquet_file.read_row_group(group, columns=COLUMNS).num_rows
        results.append((rows, time.perf_counter() - started))
    return results


def summarise(results: list[tuple[int, float]]) -> dict:
    rates = sorted(rows / seconds for rows, seconds in results)
    return {
        "rows": results[0][0],
        "first_epoch_rows_per_s": results[0][0] / results[0][1],
        "median_rows_per_s": statistics.median(rates),
        "best_rows_per_s": rates[-1],
    }


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = f"Python {platform.python_version()}, pyarrow {pyarrow.__version__}"
    return f"{model}, {os.cpu_count()} CPUs, {versions}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_s3_loader",
        description="trip_features streaming throughput: local S3 server vs local disk.",
    )
    parser.add_argument("--rows", type=int, default=4_000_000, help="raw rows to generate")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per case")
    parser.add_argument("--batch-size", type=int, default=65_536, help="loader batch size")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("data/bench_s3"), help="raw files, lake, S3 data"
    )
    args = parser.parse_args(argv)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    lake = build_lake(work, args.rows)
    s3_dir = work / "s3"
    s3_server.stop(s3_dir)
    shutil.rmtree(s3_dir, ignore_errors=True)
    server = s3_server.start(s3_dir, port=0, bucket=BUCKET)
    try:
        os.environ.update(server.env())
        s3_catalog = open_catalog(
            f"s3://{BUCKET}/lake", catalog_uri=f"sqlite:///{work / 's3_catalog.db'}"
        )
        sources = {
            "local disk": (str(lake), open_catalog(lake, create=False)),
            "S3 (SeaweedFS)": (upload_lake(lake, server, s3_catalog), s3_catalog),
        }
        report = {"machine": machine(), "rows": args.rows, "batch_size": args.batch_size}
        for case in CASES:
            for name, (data, catalog) in sources.items():
                if case == "loader":
                    results = run_loader(data, catalog, args.epochs, args.batch_size)
                else:
                    results = run_row_groups(data, catalog, args.epochs)
                report[f"{case} / {name}"] = summarise(results)
            local, remote = report[f"{case} / local disk"], report[f"{case} / S3 (SeaweedFS)"]
            report[f"{case} S3 / local (median)"] = (
                remote["median_rows_per_s"] / local["median_rows_per_s"]
            )
    finally:
        s3_server.stop(s3_dir, timeout=5)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
