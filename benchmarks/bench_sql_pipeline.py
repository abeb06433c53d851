"""SQL-pipeline benchmark: `dbt build` on DuckDB against PySpark and a hand-written DuckDB script.

    python benchmarks/bench_sql_pipeline.py --rows 10000000 --work /tmp/bench_sql

Generates the raw files once (``python -m scripts.generate_raw``) into
``<work>/raw_<rows>_s<seed>`` unless they are there, then runs each contender in its own
subprocess on a fresh output folder and DuckDB file, and measures wall time and peak memory of
its whole process tree (the sum of the RSS of the process and all its descendants, polled every
50 ms; the JVM of PySpark included):

- ``dbt_build``  ``dbt build`` (models + data tests + unit tests), the number the targets judge;
- ``dbt_run``    ``dbt run`` (models only), to show what the tests cost;
- ``dbt_build_baseline`` ``dbt build`` of ``--baseline-project-dir`` (another commit's project), so
  a change is timed against what it replaces in the same run;
- ``handwritten`` benchmarks/handwritten_duckdb.sql, one DuckDB script doing the same work;
- ``handwritten_baseline`` the script ``--baseline-handwritten-sql`` (e.g. an earlier commit's),
  to time a change of the script against what it replaces in the same run;
- ``bare_steps`` benchmarks/bare_steps_duckdb.sql, the floor: read + md5 + split + parse + write,
  no rules (its output is not the others', so it is not compared);
- ``spark``      benchmarks/spark_clean_split.py, the same job as local PySpark (``local[*]``).

All contenders read the same raw lines, apply the same VACUUM rules and write the same Parquet
datasets; after each run the harness fingerprints its outputs (rows and an order-independent
hash per split and per rejection reason, data_quality_summary, feature_stats) and checks they
equal dbt's, so the times compare the same work. Prints rows/s, time ratios against
``dbt build``, peak RSS and the three targets, and writes everything to ``<work>/results.json``.

The hand-written script alone (useful to profile it):

    python benchmarks/bench_sql_pipeline.py run-handwritten --raw DIR --lake DIR [--db FILE] \
        [--sql FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import string
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scripts.dbt_subprocess import dbt_env, dbt_executable

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
HANDWRITTEN_SQL = BENCH_DIR / "handwritten_duckdb.sql"
BARE_STEPS_SQL = BENCH_DIR / "bare_steps_duckdb.sql"
SPARK_JOB = BENCH_DIR / "spark_clean_split.py"
CONTENDERS = (
    "dbt_build",
    "dbt_run",
    "dbt_build_baseline",
    "handwritten",
    "handwritten_baseline",
    "bare_steps",
    "spark",
)
REFERENCE = "dbt_build"
FLOOR = "bare_steps"  # timed, its outputs not compared
GIB = 1024**3

# Targets of issue 14: dbt build >= 5x faster than PySpark, <= 1.25x the hand-written script's
# time, peak RSS of the whole dbt process tree < 4 GB.
TARGET_SPEEDUP_VS_SPARK = 5.0
TARGET_SLOWDOWN_VS_HANDWRITTEN = 1.25
TARGET_PEAK_RSS_BYTES = 4 * 10**9


@dataclass
class Run:
    contender: str
    command: list[str]
    returncode: int
    wall_s: float
    peak_tree_rss_bytes: int
    peak_tree_anon_bytes: int
    # ru_maxrss from wait4: the largest single process among the child and the descendants it
    # waited for (PySpark does not wait for its JVM, so there this is the Python driver only).
    max_reaped_process_rss_bytes: int
    # CPU seconds of the contender's process tree, and of everything else on the machine
    # during its run (interference from other work; compare with wall_s * nproc).
    tree_cpu_s: float
    other_cpu_s: float
    rss_samples: int
    load_average_1m_before: float
    log: str
    dbt_timing: dict | None = None
    # True when other processes used more than --max-other-cpu-share of the machine meanwhile.
    disturbed: bool = False
    check: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# measuring


class TreeRssSampler(threading.Thread):
    """Polls the RSS of a process and all its descendants; keeps the largest sum seen.

    Also keeps the largest sum of anonymous (private) memory, RSS minus file-backed and shared
    pages: Spark memory-maps its cached blocks and shuffle files, whose page-cache pages count in
    its RSS. And each process's last CPU time, for the CPU the tree used (the JVM that PySpark
    starts is never waited for, so rusage alone misses it).
    """

    def __init__(self, pid: int, interval_s: float = 0.05):
        super().__init__(daemon=True)
        import psutil

        self._psutil = psutil
        self._root = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop_event = threading.Event()
        self._known: dict[int, object] = {}
        self.peak_bytes = 0
        self.peak_anon_bytes = 0
        self.samples = 0
        self._cpu_s: dict[int, float] = {}

    def _tree(self):
        psutil = self._psutil
        try:
            processes = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return []
        # Reuse Process objects so psutil does not re-read each process's start time.
        alive = []
        for process in processes:
            alive.append(self._known.setdefault(process.pid, process))
        return alive

    def run(self) -> None:
        psutil = self._psutil
        while not self._stop_event.is_set():
            total = anon = 0
            for process in self._tree():
                with contextlib.suppress(psutil.Error):
                    memory = process.memory_info()
                    total += memory.rss
                    anon += memory.rss - getattr(memory, "shared", 0)
                    times = process.cpu_times()
                    self._cpu_s[process.pid] = times.user + times.system
            self.peak_bytes = max(self.peak_bytes, total)
            self.peak_anon_bytes = max(self.peak_anon_bytes, anon)
            self.samples += 1
            self._stop_event.wait(self._interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu_s.values())


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores) since boot."""
    import psutil

    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def measure(
    contender: str, command: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> Run:
    """Run one command to its end; wall time, peak tree RSS, max single-process RSS, CPU."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]  # other work on the machine skews timings; recorded
    busy_before = busy_cpu_s()
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeRssSampler(process.pid)
        sampler.start()
        # wait4 gives the rusage of the child and of every descendant it waited for.
        _, status, usage = os.wait4(process.pid, 0)
        wall_s = time.perf_counter() - started
        sampler.stop()
        process.returncode = os.waitstatus_to_exitcode(status)
    busy_s = busy_cpu_s() - busy_before
    tree_cpu_s = max(usage.ru_utime + usage.ru_stime, sampler.cpu_s)
    return Run(
        contender=contender,
        command=command,
        returncode=process.returncode,
        wall_s=wall_s,
        peak_tree_rss_bytes=sampler.peak_bytes,
        peak_tree_anon_bytes=sampler.peak_anon_bytes,
        # Linux reports ru_maxrss in KiB.
        max_reaped_process_rss_bytes=usage.ru_maxrss * 1024,
        tree_cpu_s=round(tree_cpu_s, 2),
        other_cpu_s=round(max(0.0, busy_s - tree_cpu_s), 2),
        rss_samples=sampler.samples,
        load_average_1m_before=round(load_before, 2),
        log=str(log_path),
    )


# --------------------------------------------------------------------------------------------
# contenders


def bench_dbt_env(
    workdir: Path, target_path: Path, args: argparse.Namespace, project_dir: Path
) -> dict[str, str]:
    env = dbt_env(workdir, target_path=target_path, DUCKDB_MEMORY_LIMIT=args.memory_limit)
    env.update(  # the project under test may be another checkout
        DBT_PROJECT_DIR=str(project_dir), DBT_PROFILES_DIR=str(args.dbt_profiles_dir)
    )
    env.pop("DBT_TARGET", None)
    return env


def dbt_vars(raw: Path, lake: Path) -> str:
    return json.dumps({"raw_path": str(raw), "lake_path": str(lake)})


def dbt_timing(target_path: Path) -> dict:
    """Where dbt's time went, from run_results.json: per model, and tests in total."""
    results = json.loads((target_path / "run_results.json").read_text())
    models, tests, unit_tests = {}, 0.0, 0.0
    for result in results["results"]:
        node = result["unique_id"]
        seconds = result.get("execution_time") or 0.0
        if node.startswith("model."):
            models[node.split(".")[-1]] = round(seconds, 3)
        elif node.startswith("unit_test."):
            unit_tests += seconds
        elif node.startswith("test."):
            tests += seconds
    slowest = sorted(results["results"], key=lambda result: -(result.get("execution_time") or 0))
    return {
        "elapsed_s": round(results.get("elapsed_time") or 0.0, 3),
        "slowest_nodes_s": {
            result["unique_id"].split(".")[-1]: round(result.get("execution_time") or 0.0, 2)
            for result in slowest[:12]
        },
        "models_s": models,
        "data_tests_s": round(tests, 3),
        "unit_tests_s": round(unit_tests, 3),
        "statuses": sorted({result["status"] for result in results["results"]}),
    }


def run_contender(name: str, raw: Path, work: Path, args: argparse.Namespace) -> Run:
    workdir = work / "runs" / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    lake = workdir / "lake"
    log = workdir / f"{name}.log"
    if name in ("dbt_build", "dbt_run", "dbt_build_baseline"):
        baseline = name == "dbt_build_baseline"
        project_dir = args.baseline_project_dir if baseline else args.dbt_project_dir
        # shared by build and run, so dbt's partial parsing is warm
        target_path = work / ("dbt_target_baseline" if baseline else "dbt_target")
        env = bench_dbt_env(workdir, target_path, args, project_dir)
        command = [dbt_executable(), name.split("_")[1], "--vars", dbt_vars(raw, lake)]
        run = measure(name, command, env, log, REPO_ROOT)
        if run.returncode == 0:
            run.dbt_timing = dbt_timing(target_path)
            shutil.copy(target_path / "run_results.json", workdir / "run_results.json")
    elif name in ("handwritten", "handwritten_baseline", FLOOR):
        lake.mkdir()
        sql = {"handwritten": HANDWRITTEN_SQL, FLOOR: BARE_STEPS_SQL}.get(
            name, args.baseline_handwritten_sql
        )
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "run-handwritten",
            "--raw",
            str(raw),
            "--lake",
            str(lake),
            "--db",
            str(workdir / "warehouse.duckdb"),
            "--memory-limit",
            args.memory_limit,
            "--sql",
            str(Path(sql).resolve()),
        ]
        run = measure(name, command, dict(os.environ), log, REPO_ROOT)
    elif name == "spark":
        command = [
            sys.executable,
            str(SPARK_JOB),
            "--raw",
            str(raw),
            "--lake",
            str(lake),
            "--driver-memory",
            args.spark_driver_memory,
        ]
        run = measure(name, command, dict(os.environ), log, REPO_ROOT)
    else:
        raise ValueError(name)
    return run


def run_handwritten(
    raw: Path, lake: Path, db: Path | None, memory_limit: str, sql_path: Path = HANDWRITTEN_SQL
) -> int:
    import duckdb

    raw_glob = f"{str(raw).rstrip('/')}/taxi_*.txt"
    if not list(raw.glob("taxi_*.txt")):
        print(
            f"no raw files matching '{raw_glob}' — generate them with "
            f"`python -m scripts.generate_raw --out {raw}`",
            file=sys.stderr,
        )
        return 2
    lake.mkdir(parents=True, exist_ok=True)
    sql = string.Template(sql_path.read_text()).substitute(
        raw_glob=raw_glob, lake_path=str(lake).rstrip("/"), memory_limit=memory_limit
    )
    started = time.perf_counter()
    connection = duckdb.connect(str(db) if db else ":memory:")
    try:
        for statement in connection.extract_statements(sql):
            connection.execute(statement).fetchall()
    finally:
        connection.close()
    print(f"{sql_path.name} done in {time.perf_counter() - started:.1f}s")
    return 0


# --------------------------------------------------------------------------------------------
# checking that every contender did the same work


def mart_source(lake: Path, mart: str) -> str:
    """DuckDB SQL reading one mart: the published build of an Iceberg lake (dbt), else the
    plain Parquet folder the hand-written script and Spark write."""
    if (lake.parent / "catalog.db").exists():
        from lakehouse.builds import pin_build

        build = pin_build(str(lake / "trip_features"))
        files = [f.uri.removeprefix("file://") for f in build.data_files(mart)]
        return f"read_parquet({files}, hive_partitioning = false)"
    pattern = "*/*.parquet" if mart == "trip_features" else "*.parquet"
    return f"read_parquet('{lake}/{mart}/{pattern}', hive_partitioning = true)"


def fingerprint(lake: Path) -> dict:
    """Order-independent summary of a lake's four datasets (rows, hashes, stats)."""
    import duckdb

    connection = duckdb.connect()
    features = connection.sql(
        f"""
        select
            split,
            count(*) as row_count,
            bit_xor(hash(
                trip_key,
                cast(fare_amount as double),
                cast(origin_lat as double),
                cast(origin_lon as double),
                cast(dest_lat as double),
                cast(dest_lon as double),
                cast(pickup_year as bigint),
                cast(pickup_month as bigint),
                cast(pickup_dow as bigint),
                cast(pickup_hour as bigint)
            )) as row_hash
        from {mart_source(lake, "trip_features")}
        group by split
        order by split
        """
    ).fetchall()
    rejected = connection.sql(
        f"""
        select
            rejection_reason,
            count(*) as row_count,
            bit_xor(hash(
                trip_key, source_file, raw_line, objectid, fareamount, destinationdatetime_tr
            )) as row_hash
        from {mart_source(lake, "trips_rejected")}
        group by rejection_reason
        order by rejection_reason
        """
    ).fetchall()
    summary = connection.sql(
        f"""
        select source_file, split, outcome, cast(row_count as bigint)
        from {mart_source(lake, "data_quality_summary")}
        order by all
        """
    ).fetchall()
    stats = connection.sql(
        f"""
        select feature_name, cast(row_count as bigint), mean_value, std_value, min_value, max_value
        from {mart_source(lake, "feature_stats")}
        order by feature_name
        """
    ).fetchall()
    connection.close()
    return {
        "trip_features": [list(row) for row in features],
        "trips_rejected": [list(row) for row in rejected],
        "data_quality_summary": [list(row) for row in summary],
        "feature_stats": [list(row) for row in stats],
    }


def same_stats(ours: list, theirs: list, rel_tol: float = 1e-9) -> bool:
    """feature_stats rows equal, floats within rel_tol (sums in another order round apart)."""
    import math

    if len(ours) != len(theirs):
        return False
    for row, other in zip(ours, theirs, strict=True):
        if row[:2] != other[:2]:
            return False
        for value, expected in zip(row[2:], other[2:], strict=True):
            if not math.isclose(value, expected, rel_tol=rel_tol, abs_tol=1e-12):
                return False
    return True


def compare(ours: dict, reference: dict) -> dict:
    checks = {
        "trip_features per split (rows + row hash)": ours["trip_features"]
        == reference["trip_features"],
        "trips_rejected per reason (rows + row hash)": ours["trips_rejected"]
        == reference["trips_rejected"],
        "data_quality_summary": ours["data_quality_summary"] == reference["data_quality_summary"],
        "feature_stats (rel 1e-9)": same_stats(ours["feature_stats"], reference["feature_stats"]),
    }
    return {"ok": all(checks.values()), "checks": checks}


# --------------------------------------------------------------------------------------------
# data, machine, report


def count_data_lines(raw: Path) -> int:
    """Raw lines minus one header per file (the rows every contender processes)."""
    lines, files = 0, 0
    for path in sorted(raw.glob("taxi_*.txt")):
        files += 1
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                lines += chunk.count(b"\n")
    return lines - files


def ensure_raw(raw: Path, rows: int, seed: int) -> None:
    if list(raw.glob("taxi_*.txt")):
        print(f"raw data: reusing {raw}")
        return
    if not (REPO_ROOT / "scripts" / "generate_raw.py").exists():
        sys.exit("scripts/generate_raw.py not found — run from a checkout that has the generator")
    print(f"raw data: generating {rows:,} rows into {raw} (once)")
    command = [
        sys.executable,
        "-m",
        "scripts.generate_raw",
        "--rows",
        str(rows),
        "--out",
        str(raw),
        "--seed",
        str(seed),
        "--quiet",
    ]
    subprocess.run(command, cwd=REPO_ROOT, check=True)


def warm_page_cache(raw: Path) -> None:
    """Read the raw files once so every contender starts from the same (warm) page cache."""
    for path in sorted(raw.glob("taxi_*.txt")):
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass


def project_digest(project_dir: Path) -> str:
    """sha256 over the dbt project's sources (not target/, logs/), to name what was timed."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if path.is_file() and relative.parts[0] not in ("target", "logs", "dbt_packages"):
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def machine() -> dict:
    import psutil

    cpu_model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break

    def version(module: str) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            return package_version(module)
        except PackageNotFoundError:
            return "not installed"

    java = subprocess.run(["java", "-version"], capture_output=True, text=True)
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "dbt_project", "profiles.yml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "cpu_model": cpu_model,
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": version("duckdb"),
        "dbt_core": version("dbt-core"),
        "dbt_duckdb": version("dbt-duckdb"),
        "pyspark": version("pyspark"),
        "java": (java.stderr or java.stdout).splitlines()[0] if java.returncode == 0 else "",
        "git_commit": git.stdout.strip(),
        "dbt_project_uncommitted_changes": bool(dirty.stdout.strip()),
    }


def report(results: dict) -> list[str]:
    rows = results["data_rows"]
    summary = results["summary"]
    reference = summary.get(REFERENCE, {})
    lines = [
        f"{'contender':<20} {'median s':>9} {'best s':>8} {'rows/s':>10} {'/ dbt build':>12} "
        f"{'peak RSS':>10} {'(anon)':>10} {'CPU s':>7} {'timed runs':>11}  check",
    ]
    for name, mine in summary.items():
        if mine.get("failed"):
            lines.append(f"{name:<20} {'FAILED':>9}")
            continue
        ratio = mine["wall_s"] / reference["wall_s"] if "wall_s" in reference else float("nan")
        timed_runs = f"{mine['runs_timed']}/{mine['runs_total']}"
        if mine["only_disturbed_runs"]:
            timed_runs += " (!)"
        lines.append(
            f"{name:<20} {mine['wall_s']:>9.1f} {mine['best_wall_s']:>8.1f} "
            f"{rows / mine['wall_s']:>10,.0f} {ratio:>11.2f}x "
            f"{mine['peak_tree_rss_bytes'] / GIB:>6.2f} GiB "
            f"{mine['peak_tree_anon_bytes'] / GIB:>6.2f} GiB {mine['tree_cpu_s']:>7.0f} "
            f"{timed_runs:>11}  {mine['check']}"
        )
    lines.append(
        "(times: median / best of the timed runs, those no other work disturbed; rows/s and "
        "'/ dbt build' from the median; peak RSS of the whole process tree over all runs, and "
        "its anonymous part; CPU s: the tree's, median; (!): every run was disturbed)"
    )
    for target in results["targets"]:
        verdict = "MET" if target["met"] else "MISSED"
        lines.append(f"target {target['name']}: {target['value']} ({verdict})")
    return lines


def evaluate_targets(summary: dict) -> list[dict]:
    """The issue's three targets for `dbt build` (judged on median times), plus `dbt run`'s."""
    targets = []
    timed = {name: mine for name, mine in summary.items() if "wall_s" in mine}

    def ratio(numerator: str, denominator: str) -> tuple[float, float]:
        return (
            timed[numerator]["wall_s"] / timed[denominator]["wall_s"],
            timed[numerator]["best_wall_s"] / timed[denominator]["best_wall_s"],
        )

    for dbt_name in ("dbt_build", "dbt_run"):
        if dbt_name not in timed:
            continue
        label = dbt_name.replace("_", " ")
        if "spark" in timed:
            median, best = ratio("spark", dbt_name)
            targets.append(
                {
                    "name": f"{label} >= {TARGET_SPEEDUP_VS_SPARK:g}x faster than PySpark",
                    "value": f"{median:.2f}x faster (best runs: {best:.2f}x)",
                    "met": median >= TARGET_SPEEDUP_VS_SPARK,
                }
            )
        if "handwritten" in timed:
            median, best = ratio(dbt_name, "handwritten")
            targets.append(
                {
                    "name": f"{label} <= {TARGET_SLOWDOWN_VS_HANDWRITTEN:g}x the hand-written "
                    "script's time",
                    "value": f"{median:.2f}x (best runs: {best:.2f}x)",
                    "met": median <= TARGET_SLOWDOWN_VS_HANDWRITTEN,
                }
            )
        peak = timed[dbt_name]["peak_tree_rss_bytes"]
        targets.append(
            {
                "name": f"{label} peak RSS < 4 GB",
                "value": f"{peak / 10**9:.2f} GB ({peak / GIB:.2f} GiB)",
                "met": peak < TARGET_PEAK_RSS_BYTES,
            }
        )
    return targets


# --------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `dbt build` (DuckDB) against PySpark and a hand-written DuckDB script.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--rows", type=int, default=10_000_000, help="raw rows to generate")
    parser.add_argument("--seed", type=int, default=42, help="generator seed")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/bench_sql"), help="scratch folder (data, outputs)"
    )
    parser.add_argument(
        "--raw",
        type=Path,
        default=None,
        help="use these raw files instead of generating <work>/raw_<rows>_s<seed>",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)} (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (median kept)")
    parser.add_argument(
        "--max-other-cpu-share",
        type=float,
        default=0.10,
        help="a run is 'disturbed' when other processes used more than this share of the "
        "machine's CPU meanwhile (default 0.10); disturbed runs are rerun and not timed",
    )
    parser.add_argument(
        "--retry-disturbed",
        type=int,
        default=2,
        help="extra attempts for a disturbed run (default 2); if every attempt is disturbed, "
        "they are timed anyway and flagged",
    )
    parser.add_argument(
        "--memory-limit",
        default="3GB",
        help="DuckDB memory_limit for dbt (DUCKDB_MEMORY_LIMIT) and the script (default 3GB)",
    )
    parser.add_argument(
        "--spark-driver-memory", default="4g", help="JVM heap of local PySpark (default 4g)"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="results file (default <work>/results.json)"
    )
    parser.add_argument(
        "--reference-json",
        type=Path,
        default=None,
        help="check every contender's outputs against this earlier results.json's dbt build "
        "outputs (default: this run's first dbt build)",
    )
    parser.add_argument(
        "--dbt-project-dir",
        type=Path,
        default=REPO_ROOT / "dbt_project",
        help="dbt project to time (default: this repo's; point it at a modified copy to "
        "measure a change)",
    )
    parser.add_argument(
        "--baseline-project-dir",
        type=Path,
        help="the dbt project the dbt_build_baseline contender builds, e.g. an earlier commit's "
        "(`git archive <commit> dbt_project | tar -x -C DIR`): before and after in one run",
    )
    parser.add_argument(
        "--baseline-handwritten-sql",
        type=Path,
        help="the script the handwritten_baseline contender runs, e.g. an earlier commit's "
        "(`git show <commit>:benchmarks/handwritten_duckdb.sql > FILE`)",
    )
    parser.add_argument(
        "--dbt-profiles-dir",
        type=Path,
        default=REPO_ROOT,
        help="folder holding the profiles.yml to use (default: this repo's)",
    )
    hand = sub.add_parser(
        "run-handwritten", help="run handwritten_duckdb.sql once", allow_abbrev=False
    )
    hand.add_argument("--raw", type=Path, required=True, help="folder with taxi_*.txt")
    hand.add_argument("--lake", type=Path, required=True, help="output root")
    hand.add_argument("--db", type=Path, default=None, help="DuckDB file (default in-memory)")
    hand.add_argument("--memory-limit", default="3GB", help="DuckDB memory_limit (default 3GB)")
    hand.add_argument(
        "--sql",
        type=Path,
        default=HANDWRITTEN_SQL,
        help="the script (default handwritten_duckdb.sql)",
    )
    return parser.parse_args(argv)


def chosen_contenders(args: argparse.Namespace) -> list[str]:
    """--contenders, checked: known names, and the inputs a baseline contender needs."""
    contenders = [name.strip() for name in args.contenders.split(",") if name.strip()]
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown:
        sys.exit(f"unknown contender(s) {unknown} — choose from {', '.join(CONTENDERS)}")
    if "dbt_build_baseline" in contenders and args.baseline_project_dir is None:
        sys.exit("the dbt_build_baseline contender needs --baseline-project-dir DIR")
    if "handwritten_baseline" in contenders and args.baseline_handwritten_sql is None:
        sys.exit("the handwritten_baseline contender needs --baseline-handwritten-sql FILE")
    return contenders


def raw_folder(args: argparse.Namespace, work: Path) -> Path:
    """--raw, or the generated (once) `<work>/raw_<rows>_s<seed>`."""
    raw = (args.raw or work / f"raw_{args.rows}_s{args.seed}").resolve()
    if args.raw is None:
        ensure_raw(raw, args.rows, args.seed)
    elif not list(raw.glob("taxi_*.txt")):
        sys.exit(f"no raw files matching '{raw}/taxi_*.txt' — drop --raw to generate them")
    return raw


def parse_projects(raw: Path, work: Path, contenders: list[str], args) -> None:
    """Parse once up front so every timed dbt command finds a warm partial-parse cache, as a
    user's second `dbt build` does."""
    parse_vars = dbt_vars(raw, work / "runs" / "dbt_parse" / "lake")
    projects = {"dbt_target": args.dbt_project_dir}
    if "dbt_build_baseline" in contenders:
        projects["dbt_target_baseline"] = args.baseline_project_dir
    for target_dir, project_dir in projects.items():
        env = bench_dbt_env(work / "runs" / "dbt_parse", work / target_dir, args, project_dir)
        subprocess.run(
            [dbt_executable(), "parse", "--vars", parse_vars],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )


class OutputCheck:
    """Compares each contender's lake with the reference: dbt build's, or --reference-json's."""

    def __init__(self, reference_json: Path | None):
        self.reference, self.against = None, "dbt build"
        if reference_json:
            self.reference = json.loads(reference_json.read_text())["reference_fingerprint"]
            self.against = str(reference_json)

    def check(self, name: str, lake: Path) -> dict:
        ours = None if name == FLOOR else fingerprint(lake)
        if ours is None:
            return {"ok": None, "checks": {}, "note": "floor: not compared"}
        if self.reference is None and name == REFERENCE:
            self.reference = ours
            return {"ok": None, "checks": {}, "note": "reference"}
        if self.reference is None:
            return {"ok": None, "checks": {}, "note": "no dbt build output yet"}
        return compare(ours, self.reference)

    def verdict(self, check: dict) -> str:
        return {
            True: f"same outputs as {self.against}",
            False: f"DIFFERENT from {self.against}",
        }.get(check["ok"], check.get("note", ""))


def timed_run(name: str, raw: Path, work: Path, args, outputs: OutputCheck) -> Run:
    """One run of a contender, its outputs checked, printed."""
    run = run_contender(name, raw, work, args)
    nproc = os.cpu_count() or 1
    run.disturbed = run.other_cpu_s > args.max_other_cpu_share * run.wall_s * nproc
    if run.returncode != 0:
        tail = "\n".join(Path(run.log).read_text().splitlines()[-15:])
        print(f"    FAILED (exit {run.returncode}), log {run.log}; its end:\n{tail}")
        run.check = {"ok": False, "checks": {}, "note": f"exit {run.returncode}"}
        return run
    run.check = outputs.check(name, work / "runs" / name / "lake")
    print(
        f"    {run.wall_s:.1f}s, peak tree RSS {run.peak_tree_rss_bytes / GIB:.2f} GiB"
        f" ({run.peak_tree_anon_bytes / GIB:.2f} anon),"
        f" CPU {run.tree_cpu_s:.0f}s (other processes {run.other_cpu_s:.0f}s"
        f"{', DISTURBED' if run.disturbed else ''}); check: {outputs.verdict(run.check)}",
        flush=True,
    )
    for check, ok in run.check.get("checks", {}).items():
        print(f"      {'ok ' if ok else 'BAD'} {check}")
    return run


def all_runs(contenders: list[str], raw: Path, work: Path, args, outputs) -> list[Run]:
    """Every contender --repeat times, interleaved; a disturbed run retried up to
    --retry-disturbed times."""
    runs: list[Run] = []
    for repeat in range(args.repeat):
        for name in contenders:
            for attempt in range(1 + args.retry_disturbed):
                label = f"[{repeat + 1}/{args.repeat}] {name}"
                print(f"{label} ..." if attempt == 0 else f"{label} again ...", flush=True)
                run = timed_run(name, raw, work, args, outputs)
                runs.append(run)
                if run.returncode != 0 or not run.disturbed:
                    break
    return runs


def check_label(name: str, checks: list) -> str:
    if False in checks:
        return "DIFFERENT"
    if all(checks):
        return "same"
    return {REFERENCE: "reference", FLOOR: "floor"}.get(name, "n/a")


def summarise(contenders: list[str], runs: list[Run], data_rows: int) -> dict:
    """Per contender: times from the runs no other work disturbed (when there are any)."""
    summary = {}
    for name in contenders:
        if any(run.contender == name and run.returncode != 0 for run in runs):
            summary[name] = {"failed": True, "check": "FAILED"}
            continue
        every = [run for run in runs if run.contender == name]
        mine = [run for run in every if not run.disturbed] or every
        walls = [run.wall_s for run in mine]
        summary[name] = {
            "runs_timed": len(mine),
            "runs_total": len(every),
            "only_disturbed_runs": all(run.disturbed for run in every),
            "wall_s": statistics.median(walls),
            "wall_s_all": [round(wall, 2) for wall in walls],
            "rows_per_s": data_rows / statistics.median(walls),
            "peak_tree_rss_bytes": max(run.peak_tree_rss_bytes for run in every),
            "peak_tree_anon_bytes": max(run.peak_tree_anon_bytes for run in every),
            "max_reaped_process_rss_bytes": max(run.max_reaped_process_rss_bytes for run in every),
            "best_wall_s": min(walls),
            "tree_cpu_s": statistics.median(run.tree_cpu_s for run in every),
            "other_cpu_s_max": max(run.other_cpu_s for run in every),
            "check": check_label(name, [run.check["ok"] for run in every]),
        }
    return summary


def results_record(args, raw: Path, data_rows: int, raw_bytes: int, runs, summary, outputs):
    """Everything results.json keeps: command, machine, inputs, settings, runs, targets."""
    results = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "dbt_project_dir": str(args.dbt_project_dir),
        "dbt_project_sha256_16": project_digest(args.dbt_project_dir),
        "baseline_project_dir": str(args.baseline_project_dir or ""),
        "baseline_handwritten_sql": str(args.baseline_handwritten_sql or ""),
        "dbt_profiles_dir": str(args.dbt_profiles_dir),
        "raw": str(raw),
        "data_rows": data_rows,
        "raw_bytes": raw_bytes,
        "settings": {
            "duckdb_memory_limit": args.memory_limit,
            "dbt_threads": os.environ.get("DBT_THREADS", "2"),
            "spark_driver_memory": args.spark_driver_memory,
            "spark_master": "local[*]",
            "repeat": args.repeat,
            "max_other_cpu_share": args.max_other_cpu_share,
            "retry_disturbed": args.retry_disturbed,
            "page_cache": "warm (raw files read once before the first run)",
        },
        "summary": summary,
        "runs": [asdict(run) for run in runs],
        "reference_fingerprint": outputs.reference,
        "checked_against": outputs.against,
    }
    results["targets"] = evaluate_targets(summary)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "run-handwritten":
        return run_handwritten(args.raw, args.lake, args.db, args.memory_limit, args.sql)

    contenders = chosen_contenders(args)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    raw = raw_folder(args, work)
    data_rows = count_data_lines(raw)
    raw_bytes = sum(path.stat().st_size for path in raw.glob("taxi_*.txt"))
    print(f"raw data: {data_rows:,} data lines, {raw_bytes / GIB:.2f} GiB in {raw}")
    if any(name.startswith("dbt_") for name in contenders):
        parse_projects(raw, work, contenders, args)
    warm_page_cache(raw)

    outputs = OutputCheck(args.reference_json)
    runs = all_runs(contenders, raw, work, args, outputs)
    summary = summarise(contenders, runs, data_rows)
    results = results_record(args, raw, data_rows, raw_bytes, runs, summary, outputs)
    print()
    for line in report(results):
        print(line)
    json_path = (args.json or work / "results.json").resolve()
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults: {json_path}")
    all_good = all(mine["check"] not in ("DIFFERENT", "FAILED") for mine in summary.values())
    return 0 if all_good else 1


if __name__ == "__main__":
    sys.exit(main())
