"""The data-quality page (static HTML): `python -m reports.data_quality` after `dbt build`.

It pins one published build of the lake (the current one, or `--snapshot` / `--as-of`'s) and
reads only that build's Parquet files, plus dbt's `run_results.json`/`manifest.json`:

- raw lines against accepted rows and each rejection reason, overall and per month file;
- the reconciliation: dbt's own count of raw lines against the rows actually written to
  `trip_features` and `trips_rejected`, per split and per reason;
- the feature distributions per split, and `feature_stats` against train recomputed;
- the split analysis (`reports.split_analysis`);
- the VACUUM test results of the last `dbt build` in `--dbt-target` (flagged when that is
  another build than the one the page reports on).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

if __name__ == "__main__":  # parse the command line before the heavy imports below
    from reports.cli import main_data_quality

    sys.exit(main_data_quality())

from reports import html
from reports.marts import as_of_time, open_build
from reports.quality import collect
from reports.quality_page import render


def write_report(
    lake: Path,
    dbt_target: Path,
    out: Path,
    snapshot_id: int | None = None,
    as_of: datetime | None = None,
) -> Path:
    """Pin the build, collect, render and write the page; returns its path."""
    build = open_build(lake, snapshot_id, as_of)
    return html.write_page(out, render(collect(build, dbt_target)))


def write_report_from_args(args: argparse.Namespace, out: Path) -> Path:
    """`write_report` with the options of `reports.cli.data_quality_parser`."""
    return write_report(args.lake, args.dbt_target, out, args.snapshot, as_of_time(args.as_of))
