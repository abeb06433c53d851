"""The data-quality page (static HTML): `python -m reports.data_quality` after `dbt build`.

It reads only the marts' Parquet and dbt's `run_results.json`/`manifest.json`:

- raw lines against accepted rows and each rejection reason, overall and per month file;
- the reconciliation: dbt's own count of raw lines against the rows actually written to
  `trip_features` and `trips_rejected`, per split and per reason;
- the feature distributions per split, and `feature_stats` against train recomputed;
- the split analysis (`reports.split_analysis`);
- the VACUUM test results of the last `dbt build`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reports import html
from reports.marts import MissingMarts
from reports.quality import collect
from reports.quality_page import render


def write_report(lake: Path, dbt_target: Path, out: Path) -> Path:
    """Collect, render and write the page; returns its path."""
    return html.write_page(out, render(collect(lake, dbt_target)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    """--lake and --dbt-target, shared with `python -m reports`."""
    parser.add_argument(
        "--lake", type=Path, default=Path("data/lake"), help="lake root the marts were written to"
    )
    parser.add_argument(
        "--dbt-target",
        type=Path,
        default=Path("dbt_project/target"),
        help="dbt target folder with run_results.json and manifest.json",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = write_report(args.lake, args.dbt_target, args.out)
    except MissingMarts as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
