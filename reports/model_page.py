"""The model page's HTML: what `reports.model` collected, as sections, tables and figures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reports import html, model_figures
from reports.marts import FEATURES, LABEL, SPLITS

if TYPE_CHECKING:
    from reports.model import ModelReport

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
        ("model_performance snapshot", str(build.snapshots["model_performance"])),
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
