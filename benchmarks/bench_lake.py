"""What write-audit-publish costs: `dbt build` into the Iceberg lake vs the plain-Parquet build
it replaced, and the training loader reading an Iceberg snapshot vs a plain Parquet folder.

    python -m benchmarks.bench_lake --rows 10000000 --repeat 2

Both builds run in the same session, interleaved (plain, wap, plain, wap, ...), each in a fresh
workspace on the same raw files. "plain" is this repository's dbt project as of `--before`
(default: the last commit before the lake became Iceberg), which overwrote Parquet folders in
place. Their trip_features are checked equal (rows and an order-free row hash per split). The
loader part then streams one epoch of the train split from each, interleaved as well.
Prints a table and writes a JSON report (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_sql_pipeline import machine, measure  # noqa: E402
from scripts.dbt_subprocess import dbt_env, dbt_executable  # noqa: E402

BEFORE = "42e2a2c"  # the last commit whose dbt build wrote plain Parquet folders
GIB = 1 << 30


def export_before(commit: str, into: Path) -> Path:
    """The dbt project, profiles and plugins of `commit`, unpacked into `into`."""
    archive = subprocess.run(
        ["git", "archive", commit, "dbt_project", "profiles.yml", "scripts"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def build_env(root: Path, work: Path, memory_limit: str) -> dict[str, str]:
    env = dbt_env(
        work,
        root=root,
        target_path=work / "target",
        log_path=work / "logs",
        DUCKDB_MEMORY_LIMIT=memory_limit,
        PYTHONPATH=str(root),  # its own dbt-duckdb plugins
    )
    env.pop("DBT_TARGET", None)
    env.pop("LAKE_CATALOG_URI", None)
    return env


def trip_features_sql(work: Path, contender: str) -> str:
    """A DuckDB source for the contender's trip_features: the published build, or the folder."""
    if contender == "plain":
        pattern = str(work / "lake" / "trip_features" / "*" / "*.parquet")
        return f"read_parquet('{pattern}', hive_partitioning = true)"
    from lakehouse.builds import pin_build

    build = pin_build(str(work / "lake" / "trip_features"))
    files = [f.uri.removeprefix("file://") for f in build.data_files("trip_features")]
    return f"read_parquet({files}, hive_partitioning = false)"


def fingerprint(work: Path, contender: str) -> list[tuple]:
    """Rows and an order-free hash of every row, per split."""
    import duckdb

    return (
        duckdb.connect()
        .sql(
            f"""
            select split, count(*), bit_xor(hash(trip_key, fare_amount, origin_lat, origin_lon,
                dest_lat, dest_lon, pickup_year, pickup_month, pickup_dow, pickup_hour))
            from {trip_features_sql(work, contender)} group by split order by split
            """
        )
        .fetchall()
    )


def time_builds(args: argparse.Namespace, raw: Path, before: Path, work: Path) -> dict:
    roots = {"plain": before, "wap": REPO_ROOT}
    runs: dict[str, list[dict]] = {"plain": [], "wap": []}
    prints = {}
    nproc = os.cpu_count() or 1
    for repeat in range(args.repeat):
        for contender, root in roots.items():
            folder = work / contender
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            dbt_vars = json.dumps({"raw_path": str(raw), "lake_path": str(folder / "lake")})
            command = [dbt_executable(), "build", "--vars", dbt_vars]
            env = build_env(root, folder, args.memory_limit)
            print(f"[{repeat + 1}/{args.repeat}] dbt build ({contender}) ...", flush=True)
            run = measure(contender, command, env, folder / "dbt.log", root)
            if run.returncode != 0:
                sys.exit(f"{contender} build failed, see {run.log}")
            busy = run.other_cpu_s > 0.10 * run.wall_s * nproc
            runs[contender].append(
                {
                    "wall_s": round(run.wall_s, 2),
                    "cpu_s": run.tree_cpu_s,
                    "other_cpu_s": run.other_cpu_s,
                    "disturbed": busy,
                    "peak_tree_rss_gib": round(run.peak_tree_rss_bytes / GIB, 2),
                }
            )
            print(f"    {run.wall_s:.1f} s wall, {run.tree_cpu_s:.0f} CPU s"
                  f" (others {run.other_cpu_s:.0f} s)", flush=True)  # fmt: skip
            prints[contender] = fingerprint(folder, contender)
    same = prints["plain"] == prints["wap"]
    summary = {
        name: {
            "wall_s_median": statistics.median(r["wall_s"] for r in items),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in items),
            "runs": items,
        }
        for name, items in runs.items()
    }
    overhead = summary["wap"]["wall_s_median"] / summary["plain"]["wall_s_median"] - 1
    cpu_overhead = summary["wap"]["cpu_s_median"] / summary["plain"]["cpu_s_median"] - 1
    return {
        "summary": summary,
        "wall_overhead": round(overhead, 4),
        "cpu_overhead": round(cpu_overhead, 4),
        "same_trip_features": same,
        "fingerprint": [list(map(str, row)) for row in prints["wap"]],
    }


def epoch_seconds(files, stats, batch_size: int) -> tuple[float, float, int]:
    """Wall and CPU seconds of one streamed epoch over `files`; rows seen."""
    from training.data import ParquetBatches

    dataset = ParquetBatches(files, stats, batch_size, shuffle=True, seed=0)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    rows = sum(int(w.sum()) for _, _, w in dataset)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime), rows


def time_loader(args: argparse.Namespace, work: Path) -> dict:
    """One epoch of the train split: Iceberg snapshot (resolved each time) vs plain folder."""
    from lakehouse.builds import pin_build
    from training.data import TRAINING_MARTS
    from training.lake import discover_split, folder_split, load_feature_stats

    stats = load_feature_stats(
        pin_build(str(work / "wap" / "lake" / "trip_features"), marts=TRAINING_MARTS)
    )
    results: dict[str, list] = {"plain_folder": [], "iceberg_snapshot": []}
    for _ in range(args.loader_repeat):
        for name in results:
            started = time.perf_counter()
            if name == "plain_folder":
                files = folder_split(str(work / "plain" / "lake" / "trip_features"), "train")
            else:
                build = pin_build(
                    str(work / "wap" / "lake" / "trip_features"), marts=TRAINING_MARTS
                )
                files = discover_split(build, "train")
            resolve_s = time.perf_counter() - started
            wall, cpu, rows = epoch_seconds(files, stats, args.batch_size)
            results[name].append(
                {
                    "resolve_s": round(resolve_s, 3),
                    "epoch_s": round(wall, 2),
                    "cpu_s": round(cpu, 2),
                    "rows": rows,
                    "rows_per_s": round(rows / (wall + resolve_s)),
                }
            )
            print(f"    loader {name}: {rows / (wall + resolve_s):,.0f} rows/s", flush=True)
    medians = {
        name: statistics.median(r["rows_per_s"] for r in items) for name, items in results.items()
    }
    return {
        "runs": results,
        "rows_per_s_median": medians,
        "ratio_iceberg_vs_plain": round(medians["iceberg_snapshot"] / medians["plain_folder"], 3),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="raw rows to generate")
    parser.add_argument("--months", default="2015-01:2019-06", help="months of raw files")
    parser.add_argument("--repeat", type=int, default=2, help="builds per contender")
    parser.add_argument("--loader-repeat", type=int, default=3, help="epochs per loader")
    parser.add_argument("--batch-size", type=int, default=4096, help="loader batch size")
    parser.add_argument("--memory-limit", default="3GB", help="DuckDB memory limit")
    parser.add_argument("--before", default=BEFORE, help="commit of the plain-Parquet build")
    parser.add_argument("--work", type=Path, default=Path("data/bench_lake"), help="scratch")
    parser.add_argument("--out", type=Path, default=Path("data/bench_lake/results.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work.resolve()
    raw = work / f"raw_{args.rows}"
    if not list(raw.glob("taxi_*.txt")):
        subprocess.run(
            [sys.executable, "-m", "scripts.generate_raw", "--rows", str(args.rows),
             "--months", args.months, "--out", str(raw), "--quiet"],
            cwd=REPO_ROOT, check=True,
        )  # fmt: skip
    before = export_before(args.before, work / "before")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load = os.getloadavg()
    builds = time_builds(args, raw, before, work)
    loader = time_loader(args, work)
    report = {
        "command": " ".join(["python -m benchmarks.bench_lake", *(argv or sys.argv[1:])]),
        "started": started,
        "load_average_before": load,
        "machine": machine(),
        "rows": args.rows,
        "builds": builds,
        "loader": loader,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plain, wap = builds["summary"]["plain"], builds["summary"]["wap"]
    print(f"\ndbt build, {args.rows:,} raw rows, median of {args.repeat}:")
    print(
        f"  plain Parquet (before): {plain['wall_s_median']:.1f} s wall, "
        f"{plain['cpu_s_median']:.0f} CPU s"
    )
    print(
        f"  write-audit-publish:    {wap['wall_s_median']:.1f} s wall, "
        f"{wap['cpu_s_median']:.0f} CPU s"
    )
    print(
        f"  overhead: {builds['wall_overhead']:+.1%} wall, {builds['cpu_overhead']:+.1%} CPU;"
        f" trip_features identical: {builds['same_trip_features']}"
    )
    print(
        f"loader, one train epoch: Iceberg snapshot / plain folder = "
        f"{loader['ratio_iceberg_vs_plain']:.3f}x  {loader['rows_per_s_median']}"
    )
    print(f"report: {args.out}")  # fmt: skip
    return 0 if builds["same_trip_features"] else 1


if __name__ == "__main__":
    sys.exit(main())
