"""Write every report page: `python -m reports [--out-dir data/reports] [--snapshot ID]`.

Prints the path of each page written. A page whose inputs are missing is skipped with one line
saying what to run first, and the exit status is then 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reports import data_quality, model, tuning
from reports.marts import LakeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m reports",
        description="Write the data-quality, tuning and model pages (static HTML); print their "
        "paths.",
    )
    data_quality.add_arguments(parser)
    tuning.add_arguments(parser)
    model.add_arguments(parser)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("data/reports"),
        help="folder for data_quality.html, tuning.html and model.html (default data/reports)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tuning.quiet_optuna()
    status = 0
    try:
        print(data_quality.write_report_from_args(args, args.out_dir / "data_quality.html"))
    except LakeError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    try:
        print(tuning.write_report_from_args(args, args.out_dir / "tuning.html"))
    except tuning.StudyNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    try:
        data = f"{str(args.lake).rstrip('/')}/trip_features"
        print(model.write_report_from_args(args, data, args.out_dir / "model.html"))
    except (LakeError, model.ModelNotFound) as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
