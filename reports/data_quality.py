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
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from reports import html
from reports.marts import LakeError, add_build_arguments, as_of_time, open_build
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
    """`write_report` with the options `add_arguments` defined."""
    return write_report(args.lake, args.dbt_target, out, args.snapshot, as_of_time(args.as_of))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m reports.data_quality",
        description="Write the data-quality and split-analysis page (static HTML) after dbt build.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/reports/data_quality.html"),
        help="page to write (default data/reports/data_quality.html)",
    )
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--lake, --snapshot/--as-of and --dbt-target, shared with `python -m reports`."""
    parser.add_argument(
        "--lake", type=Path, default=Path("data/lake"), help="lake root the marts were written to"
    )
    parser.add_argument(
        "--dbt-target",
        type=Path,
        default=Path("dbt_project/target"),
        help="dbt target folder with run_results.json and manifest.json",
    )
    add_build_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = write_report_from_args(args, args.out)
    except LakeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
