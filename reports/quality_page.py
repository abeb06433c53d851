"""The sections of the data-quality page and the page itself."""

from __future__ import annotations

from reports import html, split_analysis
from reports.dbt_artifacts import PRINCIPLES
from reports.quality import (
    ACCEPTED,
    CLIP_QUANTILES,
    HISTOGRAM_BINS,
    REASONS,
    QualityReport,
)
from reports.quality_figures import (
    distributions_figure,
    months_figure,
    outcomes_figure,
    sem_figure,
)


def build_section(report: QualityReport) -> html.Section:
    """Which published build every number on the page comes from."""
    build = report.build
    rows = [
        ("dbt invocation id", html.Raw(f"<code>{html.esc(build.invocation_id)}</code>")),
        ("snapshot id (trip_features)", html.Raw(f"<code>{build.snapshot_id}</code>")),
        ("published at", build.published_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("catalog", html.Raw(f"<code>{html.esc(build.catalog)}</code>")),
        ("lake", html.Raw(f"<code>{html.esc(build.lake_root)}</code>")),
        *(
            (f"{mart} snapshot", html.Raw(f"<code>{snapshot}</code>"))
            for mart, snapshot in build.snapshots.items()
            if mart != "trip_features"
        ),
    ]
    ids = ["build-invocation", "build-snapshot", "build-published-at", "build-catalog"]
    ids += ["build-lake", *(f"build-snapshot-{m}" for m in build.snapshots if m != "trip_features")]
    body = html.Raw(
        "<p>Every number on this page is read from this one published build: the Iceberg "
        "snapshot of each mart that one <code>dbt build</code> published, and only their data "
        "files. <code>--snapshot</code> or <code>--as-of</code> report on an earlier build "
        "(<code>python -m lakehouse builds</code> lists them).</p>"
        + html.key_values(rows, table_id="build-table", row_ids=ids)
    )
    return html.Section("build", "Lake build", body)


def other_build_warning(report: QualityReport) -> str:
    """A visible note when the dbt test results are of another build than the marts shown."""
    if not report.tests_of_another_build:
        return ""
    return (
        '<p class="caveat tests-other-build"><b>These dbt test results are of another build.</b> '
        f"<code>{html.esc(report.dbt_target / 'run_results.json')}</code> is from dbt invocation "
        f"<code>{html.esc(report.dbt_run.invocation_id)}</code>; the marts on this page are "
        f"from build <code>{html.esc(report.build.invocation_id)}</code>. Point "
        "<code>--dbt-target</code> at that build's target folder to see its tests.</p>"
    )


def summary_section(report: QualityReport) -> html.Section:
    raw, accepted = report.raw_lines, report.total(ACCEPTED)
    rejected = raw - accepted
    recon = (
        html.badge("reconciled", "ok")
        if report.reconciled
        else html.badge("NOT reconciled", "fail")
    )
    run = report.dbt_run
    if run is None or not run.tests:
        tests = html.badge("no dbt test results", "warn")
    else:
        kinds = [t.status_kind for t in run.tests]
        worst = "fail" if "fail" in kinds else "warn" if "warn" in kinds else "ok"
        tests = html.badge(
            f"{kinds.count('ok')} passed · {kinds.count('warn')} warned · "
            f"{kinds.count('fail')} failed",
            worst,
        )
        if report.tests_of_another_build:
            tests = html.Raw(tests + " " + html.badge("of another build", "warn"))
    rows = [
        ("month files", len(report.outcomes)),
        ("raw lines", raw),
        ("accepted rows", accepted),
        ("accepted share", html.percent(accepted, raw)),
        ("rejected rows", rejected),
        ("rejected share", html.percent(rejected, raw)),
        ("reconciliation", recon),
        ("dbt tests", tests),
    ]
    ids = [f"summary-{name.replace(' ', '-')}" for name, _ in rows]
    return html.Section(
        "summary",
        "Summary",
        html.Raw(
            other_build_warning(report)
            + html.key_values(rows, table_id="summary-table", row_ids=ids)
        ),
    )


def reconciliation_section(report: QualityReport) -> html.Section:
    rows = [
        (
            check.what,
            check.counted,
            check.written,
            check.written - check.counted,
            html.badge("ok", "ok") if check.ok else html.badge("mismatch", "fail"),
        )
        for check in report.checks
    ]
    body = html.Raw(
        "<p>Nothing may be dropped silently. dbt counts every raw data line once in "
        "<code>data_quality_summary</code> (by file, split and outcome); the rows actually "
        "written to <code>trip_features</code> and <code>trips_rejected</code> are counted here "
        "from the build's Parquet files.</p>"
        + html.table(
            ["check", "dbt count (data_quality_summary)", "rows in Parquet", "difference", ""],
            rows,
            table_id="reconciliation",
            row_ids=[f"recon-{check.anchor}" for check in report.checks],
        )
    )
    return html.Section("reconciliation", "Reconciliation", body)


def outcomes_section(report: QualityReport) -> html.Section:
    raw = report.raw_lines
    names = [ACCEPTED, *report.reasons]
    rows = [
        (
            name,
            REASONS.get(name, "") if name != ACCEPTED else "",
            report.total(name),
            html.percent(report.total(name), raw),
        )
        for name in names
    ]
    body = html.Raw(
        "<p>Each rejected line carries the first VACUUM rule it failed.</p>"
        + html.svg_figure(outcomes_figure(report), "Raw lines by outcome.")
        + html.table(
            ["outcome", "VACUUM principle", "raw lines", "share of raw lines"],
            rows,
            table_id="outcomes",
            row_ids=[f"outcome-{name}" for name in names],
        )
    )
    return html.Section("outcomes", "Accepted and rejected, by reason", body)


def months_section(report: QualityReport) -> html.Section:
    reasons = report.reasons
    rows = []
    for source_file, by_outcome in report.outcomes.items():
        raw = sum(by_outcome.values())
        accepted = by_outcome.get(ACCEPTED, 0)
        rows.append(
            (
                source_file,
                raw,
                accepted,
                html.percent(accepted, raw),
                *(by_outcome.get(r, 0) for r in reasons),
            )
        )
    body = html.Raw(
        html.svg_figure(
            months_figure(report),
            "Per month file: raw lines accepted and rejected (top) and the rejection rate by "
            "reason (bottom).",
        )
        + html.table(
            ["file", "raw lines", "accepted", "accepted %", *reasons],
            rows,
            table_id="months",
            scroll=True,
        )
    )
    return html.Section("months", "Per month file", body)


def distributions_section(report: QualityReport) -> html.Section:
    rows = []
    for column in report.splits.columns:
        means = {t.split: t.mean for t in column.tests}
        stats_mean, stats_std = report.feature_stats.get(column.column, (None, None))
        matches = (
            stats_mean is not None
            and abs(stats_mean - column.train_mean) <= 1e-9 * max(1.0, abs(column.train_mean))
            and abs(stats_std - column.train_std) <= 1e-9 * max(1.0, abs(column.train_std))
        )
        rows.append(
            (
                column.column,
                column.train_mean,
                column.train_std,
                means.get("validation"),
                means.get("test"),
                stats_mean,
                stats_std,
                html.badge("same", "ok") if matches else html.badge("differs", "fail"),
            )
        )
    low, high = CLIP_QUANTILES
    caption = (
        "Density per split. Integer columns by value; the others in "
        f"{HISTOGRAM_BINS} bins between the {100 * low:g}th and {100 * high:g}th percentile "
        "of all rows."
    )
    body = html.Raw(
        html.svg_figure(distributions_figure(report), caption)
        + "<h3>Means per split, and feature_stats against train recomputed</h3>"
        "<p><code>feature_stats</code> (what training normalises with) must equal the train "
        "split's mean and population std, so no validation or test row leaks into scaling.</p>"
        + html.table(
            [
                "column",
                "train mean",
                "train std",
                "validation mean",
                "test mean",
                "feature_stats mean",
                "feature_stats std",
                "feature_stats = train",
            ],
            rows,
            table_id="split-means",
        )
    )
    return html.Section("distributions", "Feature distributions per split", body)


def split_analysis_section(analysis: split_analysis.SplitAnalysis) -> html.Section:
    a = analysis
    knee_rows = []
    for column in a.columns:
        moved = ", ".join(
            f"{start:,} → {found:,}" if found else f"{start:,} → —"
            for start, found in column.knee_by_range_start
        )
        knee_rows.append(
            (
                column.column,
                column.std,
                column.curve[0].sem if column.curve else None,
                column.curve[-1].sem if column.curve else None,
                column.knee.size if column.knee else None,
                column.knee.sem if column.knee else None,
                moved,
            )
        )
    z_rows, z_ids = [], []
    for column in a.columns:
        for test in column.tests:
            verdict = (
                html.badge("p < 0.05", "warn")
                if test.flagged
                else html.badge("ok", "ok")
                if test.p_value is not None
                else html.badge("constant", "warn")
            )
            z_rows.append(
                (
                    column.column,
                    test.split,
                    test.rows,
                    test.mean,
                    column.train_mean,
                    test.z,
                    test.p_value,
                    verdict,
                )
            )
            z_ids.append(f"z-{column.column}-{test.split}")
    column = a.knee_column
    if column is None:
        recommendation = "<p>No knee: fewer than 3 sample sizes, or every column is constant.</p>"
    else:
        recommendation = (
            f'<p id="recommendation">Largest knee: <b>{column.knee.size:,} rows</b> '
            f"({html.esc(column.column)}) = <b>{a.recommended_fraction:.2%}</b> of "
            f"{a.total_rows:,} rows: recommended test and validation fraction "
            f"<b>{a.recommended_fraction:.4f}</b> each.</p>"
        )
    configured = ", ".join(
        f"{s} {f:.2%} ({a.split_rows[s]:,} rows)"
        for s, f in a.configured_fractions.items()
        if s != "train"
    )
    caveats = "".join(f"<li>{html.esc(c)}</li>" for c in split_analysis.CAVEATS)
    body = html.Raw(
        "<p>The book's method: the standard error of the mean (SEM) of nested random samples "
        "of 2<sup>10</sup>, 2<sup>11</sup>, … rows and of all rows; the knee is the point "
        "farthest from the chord joining the curve's ends (log<sub>2</sub> rows against SEM, "
        "both scaled to 0..1). Same numbers as <code>python -m reports.split_analysis</code>.</p>"
        + recommendation
        + f"<p>Configured by the dbt vars: {html.esc(configured)}.</p>"
        + html.svg_figure(sem_figure(a), "SEM against sample rows; red: the knee.")
        + html.table(
            [
                "column",
                "std",
                "SEM first sample",
                "SEM all rows",
                "knee rows",
                "SEM at knee",
                "knee if the curve starts at",
            ],
            knee_rows,
            table_id="knees",
        )
        + "<h3>Each held-out split against train (z-test)</h3>"
        "<p>z = (mean<sub>split</sub> &minus; mean<sub>train</sub>) / (&sigma;<sub>train</sub> / √n"
        "<sub>split</sub>), two-sided p-value; the same test as dbt's "
        "<code>splits_are_representative</code> (a warning).</p>"
        + html.table(
            ["column", "split", "rows", "split mean", "train mean", "z", "p-value", ""],
            z_rows,
            table_id="z-tests",
            row_ids=z_ids,
        )
        + f'<div class="caveat"><b>Where this method is weak</b><ul>{caveats}</ul></div>'
    )
    return html.Section("split-analysis", "Split analysis", body)


def dbt_tests_section(report: QualityReport) -> html.Section:
    run = report.dbt_run
    if run is None:
        return html.Section(
            "dbt-tests",
            "VACUUM tests (dbt)",
            html.Raw(
                f'<p class="caveat">No run_results.json under {html.esc(report.dbt_target)} — '
                "run <code>dbt build</code>, then this report again.</p>"
            ),
        )
    intro = (
        f"<p>From <code>{html.esc(report.dbt_target / 'run_results.json')}</code>: "
        f"<code>{html.esc(run.command)}</code>, dbt {html.esc(run.dbt_version)}, "
        f"{html.esc(run.generated_at)}, invocation <code>{html.esc(run.invocation_id)}</code>.</p>"
        + other_build_warning(report)
    )
    if not run.tests:
        intro += (
            f'<p class="caveat">The last dbt command (<code>{html.esc(run.command)}</code>) ran '
            "no tests — run <code>dbt build</code>, then this report (before "
            "<code>dbt docs generate</code>, which overwrites run_results.json).</p>"
        )
    matrix = []
    for principle in PRINCIPLES:
        tests = [t for t in run.tests if t.principle == principle]
        if tests:
            kinds = [t.status_kind for t in tests]
            matrix.append(
                (principle, len(tests), kinds.count("ok"), kinds.count("warn"), kinds.count("fail"))
            )
    rows = [
        (
            t.principle,
            html.long_name(t.name),
            t.model,
            t.column,
            html.badge(t.status, t.status_kind),
            t.failures,
            t.message if t.status_kind != "ok" else "",
        )
        for t in run.tests
    ]
    body = html.Raw(
        intro
        + html.table(
            ["principle", "tests", "passed", "warned", "failed"],
            matrix,
            table_id="dbt-test-summary",
            row_ids=[f"dbt-principle-{m[0].replace(' ', '-')}" for m in matrix],
        )
        + html.table(
            ["principle", "test", "model", "column", "status", "failing rows", "message"],
            rows,
            table_id="dbt-tests-all",
            scroll=True,
        )
    )
    return html.Section("dbt-tests", "VACUUM tests (dbt)", body)


def render(report: QualityReport) -> str:
    """The whole page."""
    build = report.build
    subtitle = (
        f"lake <code>{html.esc(build.lake_root)}</code> · build "
        f"<code>{html.esc(build.invocation_id)}</code> (snapshot {build.snapshot_id}, "
        f"published {build.published_at.strftime('%Y-%m-%d %H:%M UTC')})"
    )
    return html.page(
        "DC taxi: data quality and splits",
        subtitle,
        [
            build_section(report),
            summary_section(report),
            reconciliation_section(report),
            outcomes_section(report),
            months_section(report),
            distributions_section(report),
            split_analysis_section(report.splits),
            dbt_tests_section(report),
        ],
    )
