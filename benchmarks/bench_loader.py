"""Loader throughput and peak memory: `training.data` against the usual alternatives.

    python benchmarks/bench_loader.py                      # 1 M and 20 M rows, batch 65,536
    python benchmarks/bench_loader.py --rows 1000000 --cases ours raw_arrow
    python benchmarks/bench_loader.py --rows 2000000 --cases raw_arrow ours --repeat 3

Synthetic trip_features Parquet (DuckDB-sized row groups of 122,880 rows, files of 20 row
groups) is generated under --out once and reused. Every case runs in its own subprocess, so
its peak RSS is its own. Cases:

  ours          training.data.ParquetBatches: 9 columns, row group by row group, normalised
                float32, shuffled, padded batches (one process, no DataLoader workers: its
                reader thread decodes and normalises while the main thread shuffles and batches)
  ours_in_order the same without shuffling (the validation / test path)
  ours_workers  the same as ours in a DataLoader with one worker process per CPU
  resident      training.data.ResidentBatches on the CPU: one load, then randperm per epoch
                (rows/s is one epoch after the load; the load is reported separately)
  raw_arrow     pyarrow alone: decode the same 9 columns row group by row group, nothing else
  map_style     per-row map-style Dataset over in-memory NumPy + DataLoader default collate
  book_csv      the book's kaen ObjectStorageDataset: pandas.read_csv(skiprows, nrows) per batch,
                float64, non-numeric columns dropped (over a CSV copy of the same rows)
  pandas_chunks pandas.read_csv(chunksize=batch) float64: the best case for CSV + pandas
"""

from __future__ import annotations

import argparse
import binascii
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.lake import FEATURES, LABEL  # noqa: E402

ROW_GROUP = 122_880
FILE_ROWS = 20 * ROW_GROUP
CASES = (
    "ours",
    "ours_in_order",
    "ours_workers",
    "resident",
    "raw_arrow",
    "map_style",
    "book_csv",
    "pandas_chunks",
)
# Cases that hold or rescan everything: run on the smallest dataset, on at most this many rows.
LIMITED = {"map_style": 200_000, "book_csv": None, "pandas_chunks": None}
EPOCHS = {"ours": 2, "ours_in_order": 2, "ours_workers": 2, "resident": 2, "raw_arrow": 2}


def synthetic_trips(n: int, rng: np.random.Generator) -> pa.Table:
    """trip_features rows shaped like the real ones (after dbt): coordinates snapped to
    ~250 m blocks, fares in cents, small-integer time features."""
    keys = binascii.hexlify(rng.bytes(16 * n))
    offsets = pa.py_buffer(np.arange(0, 32 * (n + 1), 32, dtype=np.int32).tobytes())
    trip_key = pa.StringArray.from_buffers(n, offsets, pa.py_buffer(keys))

    def snapped(low: float, high: float, step: float) -> np.ndarray:
        return np.round(low + step * np.floor(rng.uniform(0, (high - low) / step, n)), 6)

    columns = {
        "origin_lat": snapped(38.81138, 38.994909, 0.00225),
        "origin_lon": snapped(-77.113633, -76.910012, 0.0029),
        "dest_lat": snapped(38.81138, 38.994909, 0.00225),
        "dest_lon": snapped(-77.113633, -76.910012, 0.0029),
        "pickup_year": rng.integers(2015, 2020, n, dtype=np.int32),
        "pickup_month": rng.integers(1, 13, n, dtype=np.int32),
        "pickup_dow": rng.integers(1, 8, n, dtype=np.int32),
        "pickup_hour": rng.integers(0, 24, n, dtype=np.int32),
    }
    miles = 69 * np.hypot(
        columns["dest_lat"] - columns["origin_lat"],
        0.78 * (columns["dest_lon"] - columns["origin_lon"]),
    )
    fare = np.clip(np.round(3.5 + 2.16 * miles + rng.gamma(2.0, 1.0, n), 2), 3.25, 179.75)
    return pa.table({"trip_key": trip_key, LABEL: fare, **columns})


def generate(root: Path, rows: int, with_csv: bool) -> Path:
    """Write `<root>/trip_features/split=train/*.parquet` (and a small validation split, which
    the training data module expects), feature_stats and maybe a CSV copy."""
    data = root / "trip_features"
    split = data / "split=train"
    if not (root / "_done").exists():
        validation = data / "split=validation"
        validation.mkdir(parents=True, exist_ok=True)
        table = synthetic_trips(min(rows // 20, ROW_GROUP), np.random.default_rng(1))
        pq.write_table(table, validation / "part-0000.parquet", row_group_size=ROW_GROUP)
        split.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        sums = np.zeros(9)
        squares = np.zeros(9)
        for index, first in enumerate(range(0, rows, FILE_ROWS)):
            table = synthetic_trips(min(FILE_ROWS, rows - first), rng)
            pq.write_table(table, split / f"part-{index:04d}.parquet", row_group_size=ROW_GROUP)
            values = np.column_stack([table.column(c).to_numpy() for c in (*FEATURES, LABEL)])
            sums += values.sum(0)
            squares += (values.astype(np.float64) ** 2).sum(0)
        mean = sums / rows
        std = np.sqrt(squares / rows - mean**2)
        stats = pa.table(
            {
                "feature_name": [*FEATURES, LABEL],
                "row_count": pa.array([rows] * 9, pa.int64()),
                "mean_value": mean,
                "std_value": std,
                "min_value": np.zeros(9),
                "max_value": np.zeros(9),
            }
        )
        (root / "feature_stats").mkdir(exist_ok=True)
        pq.write_table(stats, root / "feature_stats" / "part-0.parquet")
        (root / "_done").touch()
    if with_csv and not (root / "train.csv").exists():
        with pacsv.CSVWriter(root / "train.csv", pq.read_schema(next(split.iterdir()))) as out:
            for path in sorted(split.iterdir()):
                out.write_table(pq.read_table(path))
    return data


def folder_stats(folder: Path):
    """The FeatureStats that `generate` wrote (a plain folder: no build to pin)."""
    from training.lake import FeatureStats

    table = pq.read_table(folder).to_pydict()
    values = zip(table["mean_value"], table["std_value"], strict=True)
    by_name = dict(zip(table["feature_name"], values, strict=True))
    return FeatureStats(
        mean=tuple(by_name[name][0] for name in FEATURES),
        std=tuple(by_name[name][1] for name in FEATURES),
        label_mean=by_name[LABEL][0],
        label_std=by_name[LABEL][1],
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, data: Path, batch_size: int, limit: int | None) -> dict:
    """One measurement, in this process: rows delivered, seconds, peak RSS."""
    from training.lake import folder_split

    files = folder_split(str(data), "train")
    stats = folder_stats(data.parent / "feature_stats")
    csv = data.parent / "train.csv"
    extra: dict = {}
    if case in EPOCHS:
        return {"case": case, **repeated_epochs(case, files, stats, batch_size), **extra}
    rows = 0
    start, cpu = time.perf_counter(), time.process_time()
    if case == "map_style":
        rows = map_style(files, stats, batch_size, limit, extra)
    elif case == "book_csv":
        rows = book_csv(csv, batch_size)
    elif case == "pandas_chunks":
        import pandas as pd
        import torch

        for chunk in pd.read_csv(csv, chunksize=batch_size):
            numeric = chunk.select_dtypes("number").astype("float64")
            torch.from_numpy(numeric.to_numpy())
            rows += len(numeric)
    seconds = time.perf_counter() - start
    return {
        "case": case,
        "rows": rows,
        "seconds": round(seconds, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "rows_per_s": rows / seconds,
        "peak_rss_mb": round(peak_rss_mb()),
        **extra,
    }


def repeated_epochs(case: str, files, stats, batch_size: int) -> dict:
    """Epochs of the Parquet cases; the last one is reported (the first pays warm-up costs)."""
    import torch

    from training.data import ParquetBatches, ResidentBatches

    result: dict = {}
    if case == "resident":
        start = time.perf_counter()
        loader = ResidentBatches.load(
            files, stats, torch.device("cpu"), batch_size=batch_size, shuffle=True
        )
        result["load_s"] = round(time.perf_counter() - start, 2)
    elif case in ("ours", "ours_in_order"):
        loader = ParquetBatches(files, stats, batch_size, shuffle=case == "ours", seed=0)
    elif case == "ours_workers":
        from torch.utils.data import DataLoader

        workers = os.cpu_count() or 1
        dataset = ParquetBatches(
            files, stats, batch_size, shuffle=True, seed=0, num_workers=workers
        )
        loader = DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=True)
        loader.set_epoch = dataset.set_epoch
    for epoch in range(EPOCHS[case]):
        start, cpu, rows = time.perf_counter(), time.process_time(), 0
        if case == "raw_arrow":
            for part in files.parts:
                parquet = pq.ParquetFile(part.path)
                for group in range(parquet.num_row_groups):
                    rows += parquet.read_row_group(group, columns=[*FEATURES, LABEL]).num_rows
        else:
            loader.set_epoch(epoch)
            for _, _, w in loader:
                rows += int(w.numpy().sum())  # NumPy: keep torch's thread pool out of the timing
        seconds = time.perf_counter() - start
    return {
        **result,
        "rows": rows,
        "seconds": round(seconds, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "rows_per_s": rows / seconds,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def map_style(files, stats, batch_size: int, limit: int | None, extra: dict) -> int:
    """The common first attempt: whole table in memory, one row per __getitem__, collate."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    table = pa.concat_tables(pq.read_table(part.path) for part in files.parts)
    table = table.slice(0, limit) if limit else table
    mean, std = stats.arrays()
    features = ((table.select(list(FEATURES)).to_pandas().to_numpy() - mean) / std).astype(
        np.float32
    )
    labels = table.column(LABEL).to_numpy().astype(np.float32)

    class Rows(Dataset):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i: int):
            return torch.from_numpy(features[i]), torch.tensor(labels[i])

    extra["rows_limited_to"] = len(labels)
    start = time.perf_counter()
    rows = sum(len(y) for _, y in DataLoader(Rows(), batch_size=batch_size, shuffle=True))
    extra["iterate_only_s"] = round(time.perf_counter() - start, 2)
    return rows


def book_csv(csv: Path, batch_size: int) -> int:
    """kaen's ObjectStorageDataset: every batch re-reads the CSV up to its offset."""
    import pandas as pd
    import torch

    rows = 0
    while True:
        frame = pd.read_csv(csv, skiprows=range(1, rows + 1), nrows=batch_size)
        if frame.empty:
            return rows
        numeric = frame.select_dtypes("number").astype("float64")
        torch.from_numpy(numeric.to_numpy())
        rows += len(frame)


def measure(case: str, data: Path, batch_size: int, limit: int | None) -> dict:
    """Run one case in a fresh interpreter and read back its JSON line."""
    command = [sys.executable, __file__, "--run-case", case, "--data", str(data)]
    command += ["--batch-size", str(batch_size)]
    if limit:
        command += ["--limit", str(limit)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 20_000_000])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bench" / "loader")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every case, interleaved")
    parser.add_argument("--run-case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_case:
        print(json.dumps(run_case(args.run_case, args.data, args.batch_size, args.limit)))
        return 0

    smallest = min(args.rows)
    baseline = subprocess.run(
        [sys.executable, "-c", "import resource, torch, pyarrow, pandas, lightning;"
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(f"# interpreter + imports alone: peak RSS {float(baseline.stdout):.0f} MB")
    print(f"# batch size {args.batch_size}, cpu count {os.cpu_count()}")
    print(f"# load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| rows | case | rows measured | seconds | CPU s | rows/s | peak RSS MB | notes |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for rows in sorted(args.rows):
        needs_csv = rows == smallest and {"book_csv", "pandas_chunks"} & set(args.cases)
        data = generate(args.out / f"rows_{rows}", rows, with_csv=bool(needs_csv))
        results: dict[str, list[dict]] = {}
        for _ in range(args.repeat):  # the cases interleaved, so drifting load hits them alike
            for case in args.cases:
                if case in LIMITED and rows != smallest:
                    continue
                result = measure(case, data, args.batch_size, LIMITED.get(case))
                results.setdefault(case, []).append(result)
                print_row(rows, case, result)
        print_ratios(rows, results)
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def print_row(rows: int, case: str, result: dict) -> None:
    notes = {k: v for k, v in result.items() if k in ("load_s", "rows_limited_to")}
    print(
        f"| {rows:,} | {case} | {result['rows']:,} | {result['seconds']} "
        f"| {result['cpu_s']} | {result['rows_per_s']:,.0f} | {result['peak_rss_mb']} "
        f"| {json.dumps(notes) if notes else ''} |",
        flush=True,
    )


def print_ratios(rows: int, results: dict[str, list[dict]]) -> None:
    """Each case's rows/s over raw_arrow's, by wall and by CPU seconds (medians of the repeats)."""
    if "raw_arrow" not in results:
        return

    def median(case: str, key: str) -> float:
        return float(np.median([r[key] for r in results[case]]))

    for case in results:
        if case != "raw_arrow":
            wall = median("raw_arrow", "seconds") / median(case, "seconds")
            cpu = median("raw_arrow", "cpu_s") / median(case, "cpu_s")
            print(f"# {rows:,} rows: {case} / raw_arrow = {wall:.2f}x wall, {cpu:.2f}x CPU")


if __name__ == "__main__":
    sys.exit(main())
