"""The command lines of the report pages: `python -m reports` (every page; `dc-taxi-report`),
`reports.data_quality`, `reports.tuning`, `reports.model` and `reports.split_analysis`.

Flags -> the report's `write_report_from_args` (the split analysis: `report_from_args`), with
one `error:` line and exit status 2 for a failure whose message names the fix (no build, study
or model to report on). This module imports only the standard library, `training.cli` and
`training.defaults`: `--help` and a mistyped flag answer at once, and DuckDB, pyiceberg,
matplotlib, Optuna and MLflow are imported after the arguments are checked. Each report module
hands its `python -m` command line here before its own imports of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from training.cli import HelpFormatter
from training.defaults import (
    DEFAULT_DATA,
    DEFAULT_DB,
    DEFAULT_LAKE,
    DEFAULT_MODEL_URI,
    DEFAULT_RAW,
    DEFAULT_STORAGE,
    DEFAULT_STUDY,
    GENERATOR_RECORD,
)

OUT_DIR = Path("data/reports")
QUALITY_PAGE, TUNING_PAGE, MODEL_PAGE = "data_quality.html", "tuning.html", "model.html"
START_EXPONENT = 10  # mirrors reports.split_analysis.START_EXPONENT (a test keeps them equal)


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser whose usage line is short: a typo gets two lines, not the whole option list."""
    invoked = Path(sys.argv[0]).name
    return argparse.ArgumentParser(
        prog=invoked if invoked.startswith("dc-taxi-") else prog,  # a console script
        usage="%(prog)s [options]",
        description=description,
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )


def add_build_arguments(group: argparse._ArgumentGroup) -> None:
    """--snapshot and --as-of: which published build to read (default the current one).

    Read them back with `args.snapshot` and `reports.marts.as_of_time(args.as_of)`.
    """
    pinned = group.add_mutually_exclusive_group()
    pinned.add_argument(
        "--snapshot",
        type=int,
        metavar="ID",
        help="read the build whose trip_features snapshot has this id "
        "(`python -m lakehouse builds` lists them); default: the current build",
    )
    pinned.add_argument(
        "--as-of",
        metavar="TIMESTAMP",
        help="read the build that was current at this ISO 8601 time (no zone: UTC)",
    )


def add_lake_arguments(parser: argparse.ArgumentParser) -> None:
    """--lake, --dbt-target and the build: what the data-quality page reads."""
    group = parser.add_argument_group("build")
    group.add_argument(
        "--lake", type=Path, default=Path(DEFAULT_LAKE), help="lake root the marts were written to"
    )
    group.add_argument(
        "--dbt-target",
        type=Path,
        default=Path("dbt_project/target"),
        help="dbt target folder with run_results.json and manifest.json",
    )
    add_build_arguments(group)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data and the build: the trip_features build the model page and split analysis read."""
    group = parser.add_argument_group("build")
    group.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help="trip_features' location: <lake>/trip_features, a folder or s3://",
    )
    add_build_arguments(group)


def add_tracking_argument(group: argparse._ArgumentGroup, what: str) -> None:
    group.add_argument(
        "--tracking-uri",
        help=f"MLflow tracking URI {what} (default as training.tune: $MLFLOW_TRACKING_URI, "
        f"else sqlite {DEFAULT_DB})",
    )


def add_study_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("study")
    group.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="Optuna journal file or RDB URL, as training.tune",
    )
    group.add_argument("--study-name", default=DEFAULT_STUDY, help="study to report")
    return group


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL_URI,
        help="registered model to describe: models:/<name>@<alias> or models:/<name>/<version>",
    )
    group.add_argument(
        "--raw",
        type=Path,
        default=Path(DEFAULT_RAW),
        help=f"raw folder; its {GENERATOR_RECORD} (written by scripts.generate_raw) gives the "
        "noise floor",
    )
    return group


def add_out_argument(parser: argparse.ArgumentParser, page: str) -> None:
    parser.add_argument("--out", type=Path, default=OUT_DIR / page, help="page to write")


def data_quality_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "python -m reports.data_quality",
        "Write the data-quality and split-analysis page (static HTML) after dbt build.",
    )
    add_lake_arguments(parser)
    add_out_argument(parser, QUALITY_PAGE)
    return parser


def tuning_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "python -m reports.tuning",
        "Write the Optuna plots of a study as one self-contained HTML page.",
    )
    study = add_study_arguments(parser)
    add_tracking_argument(study, "the study was tracked in; an http(s) server's runs are linked")
    add_out_argument(parser, TUNING_PAGE)
    return parser


def model_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "python -m reports.model",
        "Write the model page (static HTML): one registered model version on one published "
        "lake build, after `python -m training.predict` and `dbt build`.",
    )
    add_data_arguments(parser)
    add_tracking_argument(add_model_arguments(parser), "of the model registry")
    add_out_argument(parser, MODEL_PAGE)
    return parser


def split_analysis_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "python -m reports.split_analysis",
        "SEM vs sample size, the knee, the recommended held-out fraction and the z-test of "
        "each split against train, from trip_features Parquet (no dbt needed).",
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--start-exponent",
        type=int,
        default=START_EXPONENT,
        help="smallest sample is 2^this rows",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def pages_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "python -m reports",
        "Write the data-quality, tuning and model pages (static HTML); print their paths.",
    )
    add_lake_arguments(parser)
    study = add_study_arguments(parser)
    add_tracking_argument(
        study, "of the study and the model registry; an http(s) server's runs are linked"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=OUT_DIR,
        help=f"folder for {QUALITY_PAGE}, {TUNING_PAGE} and {MODEL_PAGE}",
    )
    return parser


def guarded(report: Callable[[], object], *known: type[Exception]) -> int:
    """Print what `report` returns (a page's path, the analysis); a failure of a `known` type
    (its message names the fix) is one `error:` line and exit status 2, anything else a
    traceback."""
    try:
        result = report()
    except known as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result)
    return 0


def main_data_quality(argv: Sequence[str] | None = None) -> int:
    """`python -m reports.data_quality`."""
    args = data_quality_parser().parse_args(argv)
    from lakehouse.catalog import LakeError
    from reports import data_quality

    return guarded(lambda: data_quality.write_report_from_args(args, args.out), LakeError)


def main_tuning(argv: Sequence[str] | None = None) -> int:
    """`python -m reports.tuning`."""
    args = tuning_parser().parse_args(argv)
    from reports import tuning

    tuning.quiet_optuna()
    return guarded(lambda: tuning.write_report_from_args(args, args.out), tuning.StudyNotFound)


def main_model(argv: Sequence[str] | None = None) -> int:
    """`python -m reports.model`."""
    args = model_parser().parse_args(argv)
    from lakehouse.catalog import LakeError
    from reports import model

    return guarded(
        lambda: model.write_report_from_args(args, args.data, args.out),
        LakeError,
        model.ModelNotFound,
    )


def main_split_analysis(argv: Sequence[str] | None = None) -> int:
    """`python -m reports.split_analysis`."""
    args = split_analysis_parser().parse_args(argv)
    from lakehouse.catalog import LakeError
    from reports import split_analysis

    return guarded(lambda: split_analysis.report_from_args(args), LakeError)


def main_pages(argv: Sequence[str] | None = None) -> int:
    """`python -m reports` / `dc-taxi-report`: every page; a page whose inputs are missing is
    one `error:` line, the others are still written, and the exit status is then 2."""
    args = pages_parser().parse_args(argv)
    from lakehouse.catalog import LakeError
    from reports import data_quality, model, tuning

    tuning.quiet_optuna()
    out, data = args.out_dir, f"{str(args.lake).rstrip('/')}/trip_features"
    statuses = (
        guarded(lambda: data_quality.write_report_from_args(args, out / QUALITY_PAGE), LakeError),
        guarded(
            lambda: tuning.write_report_from_args(args, out / TUNING_PAGE), tuning.StudyNotFound
        ),
        guarded(
            lambda: model.write_report_from_args(args, data, out / MODEL_PAGE),
            LakeError,
            model.ModelNotFound,
        ),
    )
    return max(statuses)
