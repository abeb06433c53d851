"""Write synthetic raw DC taxi trip files in the public format, with the real data's dirt.

    python -m scripts.generate_raw --rows 200000 --months 2015-01:2019-06 --seed 42 --out data/raw

The command line only: it answers `--help` and a mistyped flag before importing the generator
(numpy, pyarrow, scipy), which is ``scripts/raw_generator.py`` (the format, the dirt, the
sidecar with the noise floor).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from training.cli import command_parser
from training.defaults import DEFAULT_RAW


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "python -m scripts.generate_raw",
        "Write synthetic raw DC taxi trip files (taxi_YYYY_MM.txt) in the public "
        "pipe-delimited format, with the real data's dirt and a known fare model.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--rows",
        type=_positive_int,
        default=200_000,
        help="total data rows over all months, spread with a mild seasonal weight (+-8%%; the "
        "total can differ by rounding)",
    )
    size.add_argument(
        "--rows-per-month",
        type=float,
        help="base rows per month (before the seasonal weight) instead of --rows; a month "
        "file depends only on seed, month and this base, so use it to add months to a folder "
        "later without changing the files already there",
    )
    parser.add_argument(
        "--months",
        default="2015-01:2019-06",
        help="inclusive month range YYYY-MM:YYYY-MM (or one YYYY-MM) within 2015-01:2019-12",
    )
    parser.add_argument(
        "--seed", type=_non_negative_int, default=42, help="random seed; same seed, same bytes"
    )
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_RAW), help="output folder")
    parser.add_argument(
        "--workers",
        type=_positive_int,
        help="processes writing months in parallel (default: the number of CPUs)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar and no summary on stderr"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rows_per_month is not None and args.rows_per_month < 1:
        parser.error("--rows-per-month must be at least 1")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a folder; pick another path")
    from scripts.raw_generator import generate, parse_months

    try:
        months = parse_months(args.months)
    except ValueError as error:
        parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    generate(
        args.out,
        months,
        args.seed,
        rows=args.rows if args.rows_per_month is None else None,
        rows_per_month=args.rows_per_month,
        workers=args.workers or os.cpu_count() or 1,
        quiet=args.quiet,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
