"""The model page (static HTML): `python -m reports.model` after `training.predict` and `dbt build`.

It describes one registered model version (default `models:/dc-taxi-fare@champion`) on one
published lake build (the current one, or `--snapshot` / `--as-of`'s):

- which model: name, version, alias, MLflow run, from the registry;
- its test RMSE beside the noise floor of the generated sample (`<raw>/_generator.json`, when
  it describes this build's rows) and beside the book's linear baseline (ordinary least squares
  on the 8 raw features, fitted here on the build's train split, RMSE on its test split);
- RMSE by pickup month and hour per split, predicted against actual by fare decile and the
  residual histogram, all from the build's `model_performance` mart (which `dbt build` computes
  from the predictions `python -m training.predict` published in `fare_predictions`).

This module reads; `reports.model_page` renders the page, `reports.model_figures` its figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

if __name__ == "__main__":  # parse the command line before the heavy imports below
    from reports.cli import main_model

    sys.exit(main_model())

import numpy as np
import pyarrow.parquet as pq

from lakehouse.builds import PinnedBuild, pin_build
from reports import html
from reports.marts import (
    FEATURES,
    LABEL,
    SPLITS,
    MissingMarts,
    as_of_time,
    connect,
    scan,
)
from reports.model_page import render
from training.defaults import DEFAULT_RAW, GENERATOR_RECORD
from training.lake import discover_split, load_feature_stats
from training.predict import DEFAULT_MODEL
from training.tracking_names import TEST_RMSE

MART = "model_performance"
RUN_FIRST = "run `python -m training.predict` then `dbt build`"


class ModelNotFound(ValueError):
    """The model URI cannot be resolved to a registered version; the message names the fix."""


class NoPredictions(MissingMarts):
    """The pinned build's model_performance has no rows for the model; the message says what
    to run."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as the registry describes it."""

    uri: str
    name: str
    version: str
    aliases: tuple[str, ...] = ()
    run_id: str | None = None
    registered_at: datetime | None = None
    recorded_test_rmse: float | None = None  # metric test_rmse of its run, if training logged it
    problem: str | None = None  # why the registry's details are missing


@dataclass(frozen=True)
class Performance:
    """One row of model_performance: one (split, breakdown, bucket) of the model's scores."""

    split: str
    breakdown: str
    bucket: str
    trip_count: int
    rmse: float
    mae: float
    bias: float
    mean_fare: float
    mean_predicted_fare: float
    min_fare: float
    max_fare: float
    scored_snapshot_id: int | None


@dataclass(frozen=True)
class LinearBaseline:
    """OLS with an intercept on the 8 raw features: fitted on train, evaluated on test."""

    train_rows: int
    test_rows: int
    intercept: float  # dollars
    coefficients: dict[str, float]  # dollars per unit of each raw feature
    test_rmse: float
    train_rmse: float
    mean_test_rmse: float  # predicting the train mean fare for every test trip


@dataclass(frozen=True)
class NoiseFloor:
    """The sample's noise-floor RMSE, or why it is unknown."""

    rmse: float | None
    source: str  # the file read, or why none applies


@dataclass(frozen=True)
class ModelReport:
    """Everything the page shows, read once from one pinned build."""

    model: ModelVersion
    build: PinnedBuild
    rows: tuple[Performance, ...]
    split_trips: dict[str, int]  # accepted trips of each split in the build
    baseline: LinearBaseline
    floor: NoiseFloor

    def where(self, breakdown: str, split: str) -> list[Performance]:
        """The rows of one breakdown and split, in bucket order."""
        found = [r for r in self.rows if r.breakdown == breakdown and r.split == split]
        return sorted(found, key=lambda r: bucket_key(r.bucket))

    def overall(self, split: str) -> Performance | None:
        return next(iter(self.where("overall", split)), None)

    def buckets(self, breakdown: str) -> list[str]:
        found = {r.bucket for r in self.rows if r.breakdown == breakdown}
        return sorted(found, key=bucket_key)

    @property
    def scored_snapshots(self) -> list[int]:
        return sorted({r.scored_snapshot_id for r in self.rows if r.scored_snapshot_id})


def bucket_key(bucket: str) -> tuple[float, str]:
    """Numeric buckets ('-3', '07') in numeric order, months ('2015-01') as text."""
    try:
        return (float(bucket), bucket)
    except ValueError:
        return (0.0, bucket)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/<name>@<alias>` or `models:/<name>/<version>` -> (name, alias, version)."""
    reference = uri.removeprefix("models:/") if uri.startswith("models:/") else None
    if reference and "@" in reference:
        name, alias = reference.split("@", 1)
        if name and alias:
            return name, alias, None
    elif reference and "/" in reference:
        name, version = reference.rsplit("/", 1)
        if name and version:
            return name, None, version
    raise ModelNotFound(
        f"--model {uri}: give a registered model as models:/<name>@<alias> or "
        "models:/<name>/<version> (the page reads model_performance by name and version)"
    )


def resolve_model(uri: str, tracking_uri: str) -> ModelVersion:
    """The registered version `uri` names, with what the registry says about it.

    An alias must be resolved in the registry (ModelNotFound when it cannot be); a version
    number is enough on its own, and the registry's details are then shown when it can be read.
    """
    from reports.tuning import missing_store, quick_http
    from training.study import first_line, masked

    name, alias, version = parse_model_uri(uri)
    problem = missing_store(tracking_uri)
    if problem is None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        try:
            with quick_http():
                if alias is not None:
                    found = client.get_model_version_by_alias(name, alias)
                else:
                    found = client.get_model_version(name, version)
                metrics = client.get_run(found.run_id).data.metrics if found.run_id else {}
        except (mlflow.exceptions.MlflowException, OSError) as error:
            problem = (
                f"not read from {masked(tracking_uri)}: {first_line(error)} — check --model "
                "and --tracking-uri (the registry training.tune registered the model in)"
            )
        else:
            return ModelVersion(
                uri=uri,
                name=name,
                version=str(found.version),
                aliases=tuple(sorted(found.aliases)),
                run_id=found.run_id,
                registered_at=datetime.fromtimestamp(found.creation_timestamp / 1000, UTC),
                recorded_test_rmse=metrics.get(TEST_RMSE),
            )
    if alias is not None:
        raise ModelNotFound(f"cannot resolve {uri}: {problem}")
    return ModelVersion(uri=uri, name=name, version=version, problem=problem)


def read_performance(build: PinnedBuild, model: ModelVersion) -> tuple[Performance, ...]:
    """The model's rows of the build's model_performance; NoPredictions when there are none."""
    fields = [name for name in Performance.__dataclass_fields__]
    sql = (
        f"select {', '.join(fields)} from {scan(build, MART)} "
        "where model_name = ? and model_version = ?"
    )
    found = connect().execute(sql, [model.name, model.version]).fetchall()
    if not found:
        raise NoPredictions(
            f"{MART} of build {build.invocation_id} (trip_features snapshot "
            f"{build.snapshot_id}) has no rows for {model.name} version {model.version} — "
            f"{RUN_FIRST}"
        )
    return tuple(Performance(*row) for row in found)


def batches(build: PinnedBuild, split: str, rows: int = 1 << 18):
    """(features float64 [n, 8], fares float64 [n]) of one split, in bounded batches."""
    files = discover_split(build, split)
    for part in files.parts:
        with files.filesystem.open_input_file(part.path) as handle:
            reader = pq.ParquetFile(handle)
            for batch in reader.iter_batches(batch_size=rows, columns=[*FEATURES, LABEL]):
                x = np.column_stack(
                    [batch.column(name).to_numpy().astype(np.float64) for name in FEATURES]
                )
                yield x, batch.column(LABEL).to_numpy().astype(np.float64)


def linear_baseline(build: PinnedBuild) -> LinearBaseline:
    """Ordinary least squares, intercept + the 8 raw features, on the build's train split.

    Streams the split and accumulates the normal equations of the features standardised with
    feature_stats (for conditioning only: the fit is the same), so memory stays bounded; a
    constant feature (one pickup year) gets coefficient 0 from the least-squares solve.
    """
    mean, std = load_feature_stats(build).arrays()

    def design(x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(x)), (x - mean) / std])

    gram = np.zeros((len(FEATURES) + 1, len(FEATURES) + 1))
    moment = np.zeros(len(FEATURES) + 1)
    train_rows, fare_sum, fare_squares = 0, 0.0, 0.0
    for x, y in batches(build, "train"):
        a = design(x)
        gram += a.T @ a
        moment += a.T @ y
        train_rows += len(y)
        fare_sum += float(y.sum())
        fare_squares += float(y @ y)
    weights = np.linalg.lstsq(gram, moment, rcond=None)[0]
    train_mean = fare_sum / train_rows
    # |y - Aw|^2 = y'y - 2 w'A'y + w'A'Aw: the train error without reading train again.
    train_sse = fare_squares - 2 * weights @ moment + weights @ gram @ weights
    test_rows, test_sse, mean_sse = 0, 0.0, 0.0
    for x, y in batches(build, "test"):
        test_rows += len(y)
        test_sse += float(np.sum((design(x) @ weights - y) ** 2))
        mean_sse += float(np.sum((train_mean - y) ** 2))
    slopes = weights[1:] / std
    return LinearBaseline(
        train_rows=train_rows,
        test_rows=test_rows,
        intercept=float(weights[0] - np.sum(slopes * mean)),
        coefficients=dict(zip(FEATURES, map(float, slopes), strict=True)),
        test_rmse=(test_sse / test_rows) ** 0.5,
        train_rmse=float(max(train_sse, 0.0) / train_rows) ** 0.5,
        mean_test_rmse=(mean_sse / test_rows) ** 0.5,
    )


def noise_floor(raw: Path, accepted_rows: int) -> NoiseFloor:
    """The generator's noise-floor RMSE, when `<raw>/_generator.json` describes this build.

    It does when its clean rows (rows passing every VACUUM rule) equal the build's accepted
    trips; anything else (real data, another sample, no record) leaves the floor unknown.
    """
    record_path = raw / GENERATOR_RECORD
    if not record_path.is_file():
        return NoiseFloor(None, f"no {record_path}: not generated data (or pass --raw)")
    try:
        record = json.loads(record_path.read_text())
        rmse, clean_rows = float(record["noise_floor_rmse"]), int(record["clean_rows"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return NoiseFloor(None, f"{record_path} unreadable: {error}")
    if clean_rows != accepted_rows:
        return NoiseFloor(
            None,
            f"{record_path} describes {clean_rows:,} clean rows, this build has "
            f"{accepted_rows:,}: another sample",
        )
    return NoiseFloor(rmse, str(record_path))


def collect(build: PinnedBuild, model: ModelVersion, raw: Path) -> ModelReport:
    """Read everything the page shows from the pinned build (and the generator's record)."""
    rows = read_performance(build, model)
    split_trips = {s: sum(f.rows for f in build.data_files("trip_features", s)) for s in SPLITS}
    return ModelReport(
        model=model,
        build=build,
        rows=rows,
        split_trips=split_trips,
        baseline=linear_baseline(build),
        floor=noise_floor(raw, sum(split_trips.values())),
    )


def write_report(
    data: str,
    out: Path,
    model_uri: str = DEFAULT_MODEL,
    tracking_uri: str | None = None,
    raw: Path = Path(DEFAULT_RAW),
    snapshot_id: int | None = None,
    as_of: datetime | None = None,
) -> Path:
    """Resolve the model, pin the build, collect, render and write the page; returns its path.

    `tracking_uri` None: where training.tune registers by default.
    """
    from training.defaults import default_tracking_uri

    model = resolve_model(model_uri, tracking_uri or default_tracking_uri())
    build = pin_build(data, snapshot_id, as_of)
    return html.write_page(out, render(collect(build, model, raw)))


def write_report_from_args(args: argparse.Namespace, data: str, out: Path) -> Path:
    """`write_report` with the options of `reports.cli.model_parser`."""
    return write_report(
        data, out, args.model, args.tracking_uri, args.raw, args.snapshot, as_of_time(args.as_of)
    )
