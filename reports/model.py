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
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lakehouse.builds import PinnedBuild, pin_build
from reports import html, model_figures
from reports.marts import (
    FEATURES,
    LABEL,
    SPLITS,
    LakeError,
    MissingMarts,
    add_build_arguments,
    as_of_time,
    connect,
    scan,
)
from training.lake import discover_split, load_feature_stats
from training.predict import DEFAULT_DATA, DEFAULT_MODEL

MART = "model_performance"
BREAKDOWNS = ("overall", "pickup_month", "pickup_hour", "fare_decile", "residual_dollars")
GENERATOR_RECORD = "_generator.json"  # scripts.generate_raw.SIDECAR_NAME
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


# ---- which model -----------------------------------------------------------------------------


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
                recorded_test_rmse=metrics.get("test_rmse"),
            )
    if alias is not None:
        raise ModelNotFound(f"cannot resolve {uri}: {problem}")
    return ModelVersion(uri=uri, name=name, version=version, problem=problem)


# ---- the build's numbers ---------------------------------------------------------------------


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
    train_rows, fare_sum = 0, 0.0
    for x, y in batches(build, "train"):
        a = design(x)
        gram += a.T @ a
        moment += a.T @ y
        train_rows += len(y)
        fare_sum += float(y.sum())
    weights = np.linalg.lstsq(gram, moment, rcond=None)[0]
    train_mean = fare_sum / train_rows

    def squared_errors(split: str) -> tuple[int, float, float]:
        rows, linear, constant = 0, 0.0, 0.0
        for x, y in batches(build, split):
            rows += len(y)
            linear += float(np.sum((design(x) @ weights - y) ** 2))
            constant += float(np.sum((train_mean - y) ** 2))
        return rows, linear, constant

    test_rows, test_sse, mean_sse = squared_errors("test")
    _, train_sse, _ = squared_errors("train")
    slopes = weights[1:] / std
    return LinearBaseline(
        train_rows=train_rows,
        test_rows=test_rows,
        intercept=float(weights[0] - np.sum(slopes * mean)),
        coefficients=dict(zip(FEATURES, map(float, slopes), strict=True)),
        test_rmse=(test_sse / test_rows) ** 0.5,
        train_rmse=(train_sse / train_rows) ** 0.5,
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


# ---- the page --------------------------------------------------------------------------------

# The test split stands out: its row of the overall table, its columns (2-4) of the month and
# hour tables (html.py's STYLE has no such rule).
PAGE_STYLE = """<style>
#overall tr#overall-test td, #overall tr#overall-test th,
#rmse-by-month :is(td, th):nth-child(n+2):nth-child(-n+4),
#rmse-by-hour :is(td, th):nth-child(n+2):nth-child(-n+4) { background: #eaf6ec; font-weight: 600; }
</style>"""


def signed(value: float | None, decimals: int = 3) -> html.NumberText:
    """Dollars with their sign: a bias of +0.120 overestimates."""
    return html.NumberText("—" if value is None else f"{value:+.{decimals}f}")


def model_section(report: ModelReport) -> html.Section:
    model, build = report.model, report.build
    scored = report.scored_snapshots
    scored_text = ", ".join(str(s) for s in scored) or "—"
    if scored and scored != [build.snapshot_id]:
        scored_text += " (an earlier build of the same trips: predictions join on trip_key)"
    registered = (
        model.registered_at.strftime("%Y-%m-%d %H:%M:%S UTC") if model.registered_at else None
    )
    rows = [
        ("registered model", html.Raw(f"<code>{html.esc(model.name)}</code>")),
        ("version", model.version),
        ("aliases", ", ".join(model.aliases) or "—"),
        ("asked for", html.Raw(f"<code>{html.esc(model.uri)}</code>")),
        ("MLflow run", html.Raw(f"<code>{html.esc(model.run_id)}</code>") if model.run_id else "—"),
        ("registered at", registered or "—"),
        ("test RMSE recorded at training", html.dollars(model.recorded_test_rmse)
         if model.recorded_test_rmse is not None else "not recorded"),
        ("lake snapshot (trip_features)", str(build.snapshot_id)),
        ("dbt invocation id", html.Raw(f"<code>{html.esc(build.invocation_id)}</code>")),
        ("published at", build.published_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("catalog", build.catalog),
        ("model_performance snapshot", str(build.snapshots[MART])),
        ("predictions made on snapshot", scored_text),
    ]  # fmt: skip
    ids = [
        "model-name", "model-version", "model-aliases", "model-uri", "model-run",
        "model-registered-at", "model-recorded-test-rmse", "build-snapshot", "build-invocation",
        "build-published-at", "build-catalog", "build-snapshot-model_performance",
        "build-scored-snapshot",
    ]  # fmt: skip
    body = html.key_values(rows, table_id="model", row_ids=ids)
    if model.problem:
        body += f'<p class="caveat">No registry details: {html.esc(model.problem)}</p>'
    return html.Section("model", "Model and build", PAGE_STYLE + body)


def headline_section(report: ModelReport) -> html.Section:
    test, floor, baseline = report.overall("test"), report.floor, report.baseline
    rmse = test.rmse if test else None
    floor_cell = html.NumberText(f"{floor.rmse:.3f}") if floor.rmse is not None else "unknown"
    rows = [
        ("model, test RMSE", html.dollars(rmse)),
        ("noise floor RMSE", floor_cell),
        ("linear baseline, test RMSE", html.dollars(baseline.test_rmse)),
        ("train-mean baseline, test RMSE", html.dollars(baseline.mean_test_rmse)),
    ]
    ids = ["headline-test-rmse", "headline-noise-floor", "headline-linear-baseline",
           "headline-mean-baseline"]  # fmt: skip
    lines = []
    if rmse is not None and floor.rmse is not None:
        lines.append(
            f"The model's test RMSE is {rmse / floor.rmse:.2f}x the noise floor (1.00x is the "
            "best any model can do on this sample)."
        )
    if rmse is not None:
        better = "better" if rmse < baseline.test_rmse else "worse"
        lines.append(
            f"It is {html.dollars(abs(baseline.test_rmse - rmse))} dollars {better} than the "
            f"linear baseline ({rmse / baseline.test_rmse:.2f}x its RMSE)."
        )
    source = (
        f"Noise floor: <code>noise_floor_rmse</code> of <code>{html.esc(floor.source)}</code>, "
        "the RMSE of the generator's expected fare given the 8 features, over all the sample's "
        "clean rows (every split): the irreducible error."
        if floor.rmse is not None
        else f"Noise floor unknown: {html.esc(floor.source)}."
    )
    body = (
        "<p>Dollars. The model's RMSE is <code>model_performance</code>'s overall test row; "
        "the baselines are computed here from this build's <code>trip_features</code> "
        '(<a href="#baseline">what they are</a>).</p>'
        + html.key_values(rows, table_id="headline", row_ids=ids)
        + "".join(f"<p>{html.esc(line)}</p>" for line in lines)
        + f'<p class="note">{source}</p>'
    )
    return html.Section("headline", "Test RMSE against the noise floor and the baseline", body)


def overall_section(report: ModelReport) -> html.Section:
    rows, ids = [], []
    for split in ("test", "validation", "train"):
        row = report.overall(split)
        if row is None:
            continue
        rows.append([
            split, html.count(row.trip_count), html.count(report.split_trips[split]),
            html.dollars(row.rmse), html.dollars(row.mae), signed(row.bias),
            html.dollars(row.mean_fare, 2), html.dollars(row.mean_predicted_fare, 2),
        ])  # fmt: skip
        ids.append(f"overall-{split}")
    headers = ["split", "trips scored", "trips in build", "RMSE", "MAE", "bias",
               "mean fare", "mean predicted"]  # fmt: skip
    body = (
        "<p>Dollars; bias is the mean of predicted - actual (&gt; 0 overestimates). The "
        "training split is what the model was fitted on: its RMSE is no estimate of new "
        "trips.</p>" + html.table(headers, rows, table_id="overall", row_ids=ids)
    )
    return html.Section("overall", "Overall, per split", body)


def by_bucket_section(
    report: ModelReport, breakdown: str, anchor: str, title: str, label: str
) -> html.Section:
    """RMSE per month or hour: the test split's RMSE, trips and bias, then the others' RMSE."""
    figure = html.svg_figure(
        model_figures.rmse_figure(report, breakdown, label),
        f"RMSE by {label}, per split (test bold); dashed: the noise floor, dotted: the linear "
        "baseline's overall test RMSE.",
    )
    by_split = {split: {r.bucket: r for r in report.where(breakdown, split)} for split in SPLITS}
    rows, ids = [], []
    for bucket in report.buckets(breakdown):
        test = by_split["test"].get(bucket)
        rows.append([
            bucket,
            html.dollars(test.rmse) if test else None,
            html.count(test.trip_count) if test else None,
            signed(test.bias) if test else None,
            *(html.dollars(by_split[s][bucket].rmse) if bucket in by_split[s] else None
              for s in ("validation", "train")),
        ])  # fmt: skip
        ids.append(f"{anchor}-{bucket}")
    headers = [label, "test RMSE", "test trips", "test bias", "validation RMSE", "train RMSE"]
    table = html.table(headers, rows, table_id=f"rmse-by-{anchor}", row_ids=ids)
    return html.Section(anchor, title, figure + table)


def deciles_section(report: ModelReport) -> html.Section:
    figure = html.svg_figure(
        model_figures.deciles_figure(report),
        "Mean predicted against mean actual fare per decile of the actual fare (test "
        "numbered); on the dashed diagonal the model is right on average.",
    )
    rows = [
        [
            int(r.bucket), html.count(r.trip_count),
            f"{html.dollars(r.min_fare, 2)} to {html.dollars(r.max_fare, 2)}",
            html.dollars(r.mean_fare, 2), html.dollars(r.mean_predicted_fare, 2),
            signed(r.bias), html.dollars(r.rmse),
        ]
        for r in report.where("fare_decile", "test")
    ]  # fmt: skip
    ids = [f"decile-{r.bucket}" for r in report.where("fare_decile", "test")]
    headers = ["decile", "test trips", "actual fare range", "mean fare", "mean predicted",
               "bias", "RMSE"]  # fmt: skip
    body = (
        "<p>Trips of each split ranked by their actual fare and cut into ten groups of equal "
        "size (decile 1: the cheapest). A model that regresses to the mean overestimates the "
        "low deciles and underestimates the high ones. Test split, dollars:</p>"
        + figure
        + html.table(headers, rows, table_id="deciles", row_ids=ids)
    )
    return html.Section("deciles", "Predicted against actual, by fare decile", body)


def residuals_section(report: ModelReport) -> html.Section:
    figure = html.svg_figure(
        model_figures.residuals_figure(report),
        "Residual (predicted - actual fare) histogram in whole dollars, as a share of each "
        "split's trips; the hatched end bins hold everything below -$9 and from +$10 on.",
    )
    test = report.where("residual_dollars", "test")
    total = sum(r.trip_count for r in test)
    near = sum(r.trip_count for r in test if -2 <= int(r.bucket) < 2)
    text = (
        f"<p>{html.percent(near, total)} of the test trips are predicted within -$2 to +$2 "
        "(bins -2 to +1).</p>"
        if total
        else ""
    )
    return html.Section("residuals", "Residuals", text + figure)


def baseline_section(report: ModelReport) -> html.Section:
    baseline = report.baseline
    rows = [["intercept", "dollars", html.fixed(baseline.intercept, 4)]]
    rows += [
        [name, "dollars per unit", html.fixed(value, 4)]
        for name, value in baseline.coefficients.items()
    ]
    body = (
        "<p>The <b>linear baseline</b> is the book's: ordinary least squares of "
        f"<code>{LABEL}</code> on an intercept and the 8 raw features "
        f"(<code>{'</code>, <code>'.join(FEATURES)}</code>) taken as plain numbers (no "
        f"encoding, no interactions), fitted on this build's {html.count(baseline.train_rows)} "
        f"train trips and evaluated on its {html.count(baseline.test_rows)} test trips: test "
        f"RMSE {html.dollars(baseline.test_rmse)}, train RMSE "
        f"{html.dollars(baseline.train_rmse)} dollars. A feature that is constant on train (one "
        "pickup year) gets coefficient 0. Computed with numpy when the page was written.</p>"
        "<p>The <b>train-mean baseline</b> predicts the mean train fare for every test trip: "
        f"test RMSE {html.dollars(baseline.mean_test_rmse)} dollars.</p>"
        + html.table(["term", "unit", "coefficient"], rows, table_id="baseline-coefficients")
    )
    return html.Section("baseline", "The baselines", body)


def render(report: ModelReport) -> str:
    """The whole page."""
    model, build = report.model, report.build
    sections = [
        model_section(report),
        headline_section(report),
        overall_section(report),
        by_bucket_section(report, "pickup_month", "month", "RMSE by pickup month", "pickup month"),
        by_bucket_section(report, "pickup_hour", "hour", "RMSE by pickup hour", "pickup hour"),
        deciles_section(report),
        residuals_section(report),
        baseline_section(report),
    ]
    subtitle = html.esc(
        f"{model.name} version {model.version} on lake build {build.invocation_id} "
        f"(trip_features snapshot {build.snapshot_id})"
    )
    return html.page(f"DC taxi: model {model.name} version {model.version}", subtitle, sections)


def write_report(
    data: str,
    out: Path,
    model_uri: str = DEFAULT_MODEL,
    tracking_uri: str | None = None,
    raw: Path = Path("data/raw"),
    snapshot_id: int | None = None,
    as_of: datetime | None = None,
) -> Path:
    """Resolve the model, pin the build, collect, render and write the page; returns its path.

    `tracking_uri` None: where training.tune registers by default.
    """
    from reports.tuning import default_tracking_uri

    model = resolve_model(model_uri, tracking_uri or default_tracking_uri())
    build = pin_build(data, snapshot_id, as_of)
    return html.write_page(out, render(collect(build, model, raw)))


def write_report_from_args(args: argparse.Namespace, data: str, out: Path) -> Path:
    """`write_report` with the options `add_arguments` and `add_build_arguments` defined."""
    return write_report(
        data, out, args.model, args.tracking_uri, args.raw, args.snapshot, as_of_time(args.as_of)
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--model and --raw, shared with `python -m reports`."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="registered model to describe: models:/<name>@<alias> or models:/<name>/<version> "
        f"(default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--raw",
        type=Path,
        default=Path("data/raw"),
        help=f"raw folder; its {GENERATOR_RECORD} (written by scripts.generate_raw) gives the "
        "noise floor (default data/raw)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m reports.model",
        description="Write the model page (static HTML): one registered model version on one "
        "published lake build, after `python -m training.predict` and `dbt build`.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help=f"trip_features' location in the lake (default {DEFAULT_DATA})",
    )
    add_build_arguments(parser)
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI of the model registry (default as training.tune: "
        "$MLFLOW_TRACKING_URI, else sqlite data/mlflow.db)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/reports/model.html"),
        help="page to write (default data/reports/model.html)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = write_report_from_args(args, args.data, args.out)
    except (LakeError, ModelNotFound) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
