"""Incremental builds: adding one month against a full build of the same raw files, one run.

    python benchmarks/bench_incremental.py --rows 67400000 --work /tmp/bench_incremental

Generates every month 2015-01..2019-06 once into ``<work>/raw_<rows>_s<seed>`` (reused), then,
in one lake and one DuckDB file:

1. ``first``        ``dbt build`` of every month but the last (a full build: nothing published);
2. ``incremental``  the last month hard-linked into the raw folder, ``dbt build`` (incremental);
3. ``full_refresh`` ``dbt build --full-refresh`` of the same raw files: the yardstick.

Between 1 and 2 it also plans the same increment for Athena (`python -m lakehouse athena-build`
cannot run here): the SQL its hooks would send, rendered offline for the athena target, must
parse as Athena SQL, and what Athena would scan is printed: the new file's raw bytes and the
stored size of the published trip keys (from this lake's Iceberg manifests).

Each build runs in its own process, measured as in bench_sql_pipeline (wall, CPU seconds of
the process tree, other CPU on the machine meanwhile, peak RSS). The published marts after 2 and
3 are fingerprinted (rows and a sum of row hashes per mart, feature_stats to 1e-9) and must be
equal. Prints the ratios and writes ``<work>/incremental_results.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_sql_pipeline import (  # noqa: E402
    dbt_vars,
    ensure_raw,
    machine,
    measure,
    warm_page_cache,
)
from scripts.dbt_subprocess import dbt_env, dbt_executable  # noqa: E402

MONTHS = ("2015-01", "2019-06")
EXACT_MARTS = ("trip_features", "trips_rejected", "data_quality_summary")
TARGET_TIME_SHARE = 0.10
TARGET_PEAK_RSS_BYTES = 4 * 10**9


def published_fingerprint(lake: Path) -> dict:
    """Rows and an order-independent sum of row hashes of every mart of the current build."""
    import duckdb

    from lakehouse.builds import pin_build

    build = pin_build(str(lake / "trip_features"))
    connection = duckdb.connect()
    found: dict = {"invocation_id": build.invocation_id}
    for mart in EXACT_MARTS:
        files = [f.uri.removeprefix("file://") for f in build.data_files(mart)]
        count, hashed = connection.execute(
            f"select count(*), cast(sum(cast(hash(t) as hugeint)) as varchar) "
            f"from read_parquet({files}, hive_partitioning = false) as t"
        ).fetchone()
        found[mart] = [count, hashed]
    files = [f.uri.removeprefix("file://") for f in build.data_files("feature_stats")]
    found["feature_stats"] = connection.execute(
        f"select feature_name, row_count, mean_value, std_value, min_value, max_value "
        f"from read_parquet({files}) order by feature_name"
    ).fetchall()
    connection.close()
    return found


def same(a: dict, b: dict) -> bool:
    if any(a[mart] != b[mart] for mart in EXACT_MARTS):
        return False
    return all(
        all(
            math.isclose(x, y, rel_tol=1e-9) if isinstance(x, float) else x == y
            for x, y in zip(row_a, row_b, strict=True)
        )
        for row_a, row_b in zip(a["feature_stats"], b["feature_stats"], strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="raw rows in all months")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_incremental"))
    parser.add_argument("--threads", type=int, default=2, help="dbt threads")
    args = parser.parse_args(argv)

    raw_all = args.work / f"raw_{args.rows}_s{args.seed}"
    ensure_raw(raw_all, args.rows, args.seed)
    files = sorted(raw_all.glob("taxi_*.txt"))
    *earlier, last = files
    run = args.work / "run"
    shutil.rmtree(run, ignore_errors=True)
    raw = run / "raw"
    raw.mkdir(parents=True)
    for path in earlier:
        os.link(path, raw / path.name)
    warm_page_cache(raw_all)

    lake = run / "lake"
    env = dbt_env(run, target_path=run / "target", log_path=run / "logs")
    build = [dbt_executable(), "build", "--target", "local", "--threads", str(args.threads)]
    build += ["--vars", dbt_vars(raw, lake)]

    runs = {}
    runs["first"] = measure("first", build, env, run / "logs" / "first.log", REPO_ROOT)
    athena = athena_increment(lake, last, run)
    os.link(last, raw / last.name)
    runs["incremental"] = measure(
        "incremental", build, env, run / "logs" / "incremental.log", REPO_ROOT
    )
    incremental = published_fingerprint(lake)
    runs["full_refresh"] = measure(
        "full_refresh", [*build, "--full-refresh"], env, run / "logs" / "full.log", REPO_ROOT
    )
    full = published_fingerprint(lake)
    for name, result in runs.items():
        if result.returncode != 0:
            print(f"{name}: dbt build failed (exit {result.returncode}) — see {result.log}")
            return 1

    inc, ref = runs["incremental"], runs["full_refresh"]
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rows": args.rows,
        "added_file": last.name,
        "added_bytes": last.stat().st_size,
        "raw_bytes": sum(path.stat().st_size for path in files),
        "runs": {name: vars(result) for name, result in runs.items()},
        "equal_to_full_refresh": same(incremental, full),
        "time_share_wall": round(inc.wall_s / ref.wall_s, 4),
        "time_share_cpu": round(inc.tree_cpu_s / ref.tree_cpu_s, 4),
        "fingerprint": {"incremental": incremental, "full_refresh": full},
        "athena": athena,
    }
    (args.work / "incremental_results.json").write_text(json.dumps(results, indent=1, default=str))
    added = f"{last.name} ({last.stat().st_size:,} B)"
    print(f"{args.rows:,} raw rows in {len(files)} files; added {added}")
    for name, result in runs.items():
        print(
            f"  {name:13s} wall {result.wall_s:7.1f} s  cpu {result.tree_cpu_s:7.1f} s  "
            f"other cpu {result.other_cpu_s:6.1f} s  "
            f"peak rss {result.peak_tree_rss_bytes / 1e9:5.2f} GB  "
            f"load {result.load_average_1m_before}"
        )
    print(
        f"incremental / full refresh: wall {results['time_share_wall']:.3f}, "
        f"cpu {results['time_share_cpu']:.3f} (target <= {TARGET_TIME_SHARE}); "
        f"peak rss {inc.peak_tree_rss_bytes / 1e9:.2f} GB (target < 4); "
        f"outputs equal: {results['equal_to_full_refresh']}"
    )
    print(
        f"athena: the increment's SQL parses ({athena['statements']} statements); {athena['scan']}"
    )
    return 0 if results["equal_to_full_refresh"] else 1


def athena_increment(lake: Path, new_file: Path, run: Path) -> dict:
    """The same increment planned for Athena: its hooks' SQL rendered offline and parsed, and
    what Athena would scan (raw bytes of the new file, published trip keys' stored bytes)."""
    import sqlglot

    from lakehouse.athena_build import ScanEstimate, scan_estimate
    from lakehouse.catalog import open_catalog
    from lakehouse.increment import INCREMENTAL, Increment, RawFile
    from tests.athena.conftest import OfflineDbt
    from tests.athena.test_increment_sql import PUBLISHED, SNIPPETS, plan

    rendered = OfflineDbt(run / "athena").render(SNIPPETS, dbt_vars=plan([new_file.name]))
    statements = sum(len(sqlglot.parse(sql, read="athena")) for sql in rendered.values())
    size = new_file.stat().st_size
    increment = Increment(
        INCREMENTAL,
        "bench",
        "",
        [RawFile(new_file.name, size, 0, "")],
        PUBLISHED,
        added=[new_file.name],
        reread=[new_file.name],
    )
    key_marts = ("trip_features", "trips_rejected")  # lake_trip_key_marts()
    catalog = open_catalog(str(lake), create=False)
    estimate: ScanEstimate = scan_estimate(catalog, increment, key_marts)
    return {
        "statements": statements,
        "raw_bytes": estimate.raw_bytes,
        "key_bytes": estimate.key_bytes,
        "scan": estimate.summary(),
    }


if __name__ == "__main__":
    sys.exit(main())
