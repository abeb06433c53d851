"""The sections of the data-quality page and the page itself."""

from __future__ import annotations

import re
from dataclasses import dataclass

from reports import html, split_analysis
from reports.dbt_artifacts import PRINCIPLES, DbtTest
from reports.marts import LABEL
from reports.quality import (
    ACCEPTED,
    CLIP_QUANTILES,
    HISTOGRAM_BINS,
    QualityReport,
)
from reports.quality_figures import (
    distributions_figure,
    months_figure,
    outcomes_figure,
    sem_figure,
)


def measured(column: str, value: float | None) -> html.NumberText:
    """A value of `column` (a mean, a std) in its unit: degrees to 5 decimals, dollars to 3."""
    if column.endswith(("_lat", "_lon")):
        return html.coordinate(value)
    if column == LABEL:
        return html.dollars(value)
    return html.fixed(value, 3)  # integer-coded features: year, month, day of week, hour


def feature_stats_match(report: QualityReport, column: split_analysis.ColumnAnalysis) -> bool:
    """feature_stats of `column` equals its train mean and population std, recomputed."""
    stats_mean, stats_std = report.feature_stats.get(column.column, (None, None))
    return (
        stats_mean is not None
        and abs(stats_mean - column.train_mean) <= 1e-9 * max(1.0, abs(column.train_mean))
        and abs(stats_std - column.train_std) <= 1e-9 * max(1.0, abs(column.train_std))
    )


def correction_text(analysis: split_analysis.SplitAnalysis) -> str:
    """The flagging rule in words: Bonferroni over the pairs compared, with its numbers."""
    a = analysis
    return (
        f"A pair is flagged when its p-value is below &alpha;/m = {a.alpha:g}/{a.comparisons} = "
        f"{html.p_value(a.p_value_threshold)}, i.e. |z| &gt; {html.fixed(a.z_threshold, 4)}: "
        f"the Bonferroni correction for the {a.comparisons} (column, held-out split) pairs "
        f"compared, so that a correct random split is flagged in at most {a.alpha:.0%} of builds."
    )


def flagged_pairs_text(analysis: split_analysis.SplitAnalysis) -> str:
    """The flagged (column, split) pairs with their z and p, and the rule that flagged them."""
    flagged = ", ".join(
        f"<code>{html.esc(name)}</code> in {html.esc(test.split)} "
        f"(z = {html.fixed(test.z, 2)}, p = {html.p_value(test.p_value)})"
        for name, test in analysis.flagged
    )
    return (
        f"Flagged: {flagged}. {correction_text(analysis)} A flagged mean differs from train's "
        'by more than chance explains; see the <a href="#z-tests">z-tests</a> and the '
        '<a href="#distributions">distributions</a>.'
    )


@dataclass(frozen=True)
class Attention:
    """One line of the page's "Warnings and failures": a badge and what to look at."""

    anchor: str
    kind: str  # fail or warn
    label: str
    text: str  # HTML

    def markup(self) -> str:
        badge = html.badge(self.label, self.kind)
        return f'<li id="attention-{html.esc(self.anchor)}">{badge} {self.text}</li>'


def dbt_test_attention(test: DbtTest, analysis: split_analysis.SplitAnalysis | None) -> Attention:
    """One failed or warned dbt test; `analysis`: this build's z-tests, when they are its."""
    where = ".".join(part for part in (test.model, test.column) if part)
    text = f"dbt test <code>{html.esc(test.name)}</code>"
    if where:
        text += f" on <code>{html.esc(where)}</code>"
    if test.failures:
        text += f": {test.failures:,} failing row{'s' if test.failures != 1 else ''}"
    # dbt's "Got 2 results, configured to warn if != 0" only repeats the failing rows.
    if test.message and not re.match(r"Got \d+ results?, configured to", test.message):
        text += f" — {html.esc(test.message)}"
    if test.kind == "splits_are_representative" and analysis is not None and analysis.flagged:
        text += f". {flagged_pairs_text(analysis)}"
    return Attention(f"dbt-{test.name}", test.status_kind, test.status, text)


def attentions(report: QualityReport) -> list[Attention]:
    """Everything on the page that failed, then everything that warned."""
    found = lake_attentions(report) + dbt_attentions(report)
    return sorted(found, key=lambda item: item.kind != "fail")  # stable: failures first


def lake_attentions(report: QualityReport) -> list[Attention]:
    """What the page's own checks of the lake found: reconciliation, feature_stats."""
    found = []
    mismatched = [check for check in report.checks if not check.ok]
    if mismatched:
        found.append(
            Attention(
                "reconciliation",
                "fail",
                "NOT reconciled",
                f"{len(mismatched)} reconciliation checks differ: raw lines were lost or counted "
                'twice between dbt and the Parquet files; see <a href="#reconciliation">'
                "Reconciliation</a>.",
            )
        )
    differs = [c.column for c in report.splits.columns if not feature_stats_match(report, c)]
    if differs:
        names = ", ".join(f"<code>{html.esc(name)}</code>" for name in differs)
        found.append(
            Attention(
                "feature-stats",
                "fail",
                "differs",
                f"<code>feature_stats</code> is not the train split's mean and std for {names}; "
                'see <a href="#distributions">the means per split</a>.',
            )
        )
    return found


def dbt_attentions(report: QualityReport) -> list[Attention]:
    """What dbt's tests of the build say, or that there are none; the z-tests' flag."""
    found = []
    run = report.dbt_run
    if run is None:
        found.append(
            Attention(
                "no-dbt-results",
                "warn",
                "no dbt tests",
                "This build recorded no dbt results in the lake (built on Athena, or before "
                f"builds did) and <code>{html.esc(report.dbt_target)}</code> has no "
                "run_results.json — run <code>dbt build</code>, then this report again.",
            )
        )
    elif not run.tests:
        found.append(
            Attention(
                "no-dbt-tests",
                "warn",
                "no dbt tests",
                f"The last dbt command (<code>{html.esc(run.command)}</code>) ran no tests.",
            )
        )
    if report.tests_of_another_build:
        found.append(
            Attention(
                "other-build",
                "warn",
                "of another build",
                "The dbt test results below are of dbt invocation "
                f"<code>{html.esc(run.invocation_id)}</code>, not of this build.",
            )
        )
    tests = [t for t in run.tests if t.status_kind != "ok"] if run else []
    # The z-tests on this page are of its build; dbt's are of this build only when its results are.
    own = None if report.tests_of_another_build else report.splits
    found += [dbt_test_attention(t, own) for t in tests]
    z_test_warned = own is not None and any(t.kind == "splits_are_representative" for t in tests)
    if report.splits.flagged and not z_test_warned:
        found.append(
            Attention("z-tests", "warn", "split differs", flagged_pairs_text(report.splits))
        )
    return found


def attention_section(report: QualityReport) -> html.Section:
    """Every failure, then every warning, of the whole page in one short list at its top."""
    found = attentions(report)
    if found:
        body = f'<ul class="attention">{"".join(item.markup() for item in found)}</ul>'
    else:
        run = report.dbt_run
        tested = f"all {len(run.tests)} dbt tests passed, " if run else ""
        body = (
            f'<p id="attention-none">{html.badge("all clear", "ok")} Nothing needs attention: '
            f"{tested}every count reconciles and <code>feature_stats</code> equals train.</p>"
        )
    return html.Section("attention", "Warnings and failures", html.Raw(body))


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
    for key, label, value in raw_file_rows(report.raw_files):
        rows.append((label, value))
        ids.append(f"build-raw-{key}")
    body = html.Raw(
        "<p>Every number on this page is read from this one published build: the Iceberg "
        "snapshot of each mart that one <code>dbt build</code> published, and only their data "
        "files. <code>--snapshot</code> or <code>--as-of</code> report on an earlier build "
        "(<code>python -m lakehouse builds</code> lists them).</p>"
        + html.key_values(rows, table_id="build-table", row_ids=ids)
    )
    return html.Section("build", "Lake build", body)


def raw_file_rows(record: dict | None) -> list[tuple[str, str, str]]:
    """(id, label, value) rows: how the build read the raw files, and which it added."""
    if record is None:
        return [("mode", "raw files", "not recorded by this build")]
    mode = record["mode"]
    rows = [
        (
            "mode",
            "raw files",
            f"{len(record['files'])} file(s), {mode} build"
            + (f" ({record['reason']})" if mode == "full" else f" on {record['published_build']}"),
        )
    ]
    for key, label in (
        ("added", "raw files added"),
        ("changed", "raw files changed"),
        ("removed", "raw files removed (rows dropped)"),
        ("reread", "raw files read by this build"),
    ):
        rows.append((key, label, ", ".join(record[key]) or "none"))
    return rows


def other_build_warning(report: QualityReport) -> str:
    """A visible note when the dbt test results are of another build than the marts shown."""
    if not report.tests_of_another_build:
        return ""
    return (
        '<p class="caveat tests-other-build"><b>These dbt test results are of another build.</b> '
        f"<code>{html.esc(report.dbt_results)}</code> is from dbt invocation "
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
            report.reason_principles.get(name, "") if name != ACCEPTED else "",
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
            header_breaks=True,
        )
    )
    return html.Section("months", "Per month file", body)


def distributions_section(report: QualityReport) -> html.Section:
    rows = []
    for column in report.splits.columns:
        means = {t.split: t.mean for t in column.tests}
        stats_mean, stats_std = report.feature_stats.get(column.column, (None, None))
        name = column.column
        rows.append(
            (
                name,
                measured(name, column.train_mean),
                measured(name, column.train_std),
                measured(name, means.get("validation")),
                measured(name, means.get("test")),
                measured(name, stats_mean),
                measured(name, stats_std),
                html.badge("same", "ok")
                if feature_stats_match(report, column)
                else html.badge("differs", "fail"),
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
        + f"<p>{UNITS}</p>"
    )
    return html.Section("distributions", "Feature distributions per split", body)


UNITS = (
    "Coordinates in degrees to 5 decimals (about 1 m), fares in dollars, the integer-coded "
    "features (year, month, day of week, hour) to 3 decimals."
)


def split_analysis_section(analysis: split_analysis.SplitAnalysis) -> html.Section:
    a = analysis
    caveats = "".join(f"<li>{html.esc(c)}</li>" for c in split_analysis.CAVEATS)
    body = html.Raw(
        "<p>The book's method: the standard error of the mean (SEM) of nested random samples "
        "of 2<sup>10</sup>, 2<sup>11</sup>, … rows and of all rows; the knee is the point "
        "farthest from the chord joining the curve's ends (log<sub>2</sub> rows against SEM, "
        "both scaled to 0..1). Same numbers as <code>python -m reports.split_analysis</code>.</p>"
        + held_out_sizes(a)
        + html.svg_figure(sem_figure(a), "SEM against sample rows; red: the knee.")
        + knee_table(a)
        + "<h3>Each held-out split against train (z-test)</h3>"
        "<p>z = (mean<sub>split</sub> &minus; mean<sub>train</sub>) / (&sigma;<sub>train</sub> / √n"
        "<sub>split</sub>) and its two-sided p-value, per pair: the book's test.</p>"
        + z_decision(a)
        + z_test_table(a)
        + f'<div class="caveat" id="split-caveats"><b>Where this method is weak</b>'
        f"<ul>{caveats}</ul></div>"
    )
    return html.Section("split-analysis", "Split analysis", body)


def knee_table(a: split_analysis.SplitAnalysis) -> str:
    """Per column: its std, the SEM of the first sample and of all rows, the knee, and where
    the knee lands when the curve starts later."""
    rows = []
    for column in a.columns:
        moved = ", ".join(
            f"{start:,} → {found:,}" if found else f"{start:,} → —"
            for start, found in column.knee_by_range_start
        )
        rows.append(
            (
                column.column,
                measured(column.column, column.std),
                html.significant(column.curve[0].sem if column.curve else None),
                html.significant(column.curve[-1].sem if column.curve else None),
                html.count(column.knee.size if column.knee else None),
                html.significant(column.knee.sem if column.knee else None),
                moved,
            )
        )
    return html.table(
        [
            "column",
            "std",
            "SEM first sample",
            "SEM all rows",
            "knee rows",
            "SEM at knee",
            "knee if the curve starts at",
        ],
        rows,
        table_id="knees",
    )


def z_test_table(a: split_analysis.SplitAnalysis) -> str:
    """One row per (column, held-out split): its z-test against train and the verdict."""
    rows, ids = [], []
    for column in a.columns:
        for test in column.tests:
            verdict = (
                html.badge("flagged", "warn")
                if a.is_flagged(test)
                else html.badge("passes", "ok")
                if test.z is not None
                else html.badge("constant", "warn")
            )
            rows.append(
                (
                    column.column,
                    test.split,
                    html.count(test.rows),
                    measured(column.column, test.mean),
                    measured(column.column, column.train_mean),
                    html.fixed(test.z, 2),
                    html.p_value(test.p_value),
                    verdict,
                )
            )
            ids.append(f"z-{column.column}-{test.split}")
    return html.table(
        ["column", "split", "rows", "split mean", "train mean", "z", "p-value", "flag"],
        rows,
        table_id="z-tests",
        row_ids=ids,
    )


def z_decision(a: split_analysis.SplitAnalysis) -> str:
    """Which pairs the corrected z-test flags, and the rule: the decision dbt's test makes."""
    if not a.comparisons:
        return '<p id="z-decision">No pair to compare: every column is constant in train.</p>'
    flagged = len(a.flagged)
    verdict = (
        f"<b>{flagged} of {a.comparisons} pairs flagged.</b>"
        if flagged
        else f"All {a.comparisons} pairs pass: nothing is flagged."
    )
    constant = sorted({c.column for c in a.columns for t in c.tests if t.z is None})
    not_compared = (
        f" ({', '.join(f'<code>{html.esc(name)}</code>' for name in constant)}: constant in "
        "train, no z, not counted.)"
        if constant
        else ""
    )
    return (
        f'<p id="z-decision">{verdict} {correction_text(a)}{not_compared} dbt\'s '
        "<code>splits_are_representative</code> test makes the same decision and warns when "
        "any pair is flagged.</p>"
    )


def held_out_sizes(a: split_analysis.SplitAnalysis) -> str:
    """What the configured held-out sizes give, then the knee method's figure, worded as weak."""
    configured = ", ".join(
        f"{s} {f:.2%} ({a.split_rows[s]:,} rows, mean {html.esc(LABEL)} known to "
        f"±${a.label_margins[s]:.3f})"
        for s, f in a.configured_fractions.items()
        if s != "train"
    )
    sizes = (
        f'<p id="configured-splits">Configured by the dbt vars: {configured}, at 95% '
        "(1.96·s/√n: the better-founded way to size a held-out split is from the error you can "
        "accept).</p>"
    )
    column = a.knee_column
    if column is None:
        return sizes + (
            '<p id="recommendation">No knee: fewer than 3 sample sizes, or every column is '
            "constant.</p>"
        )
    moved = ", ".join(
        f"from {start:,} rows: {found:,}" if found else f"from {start:,} rows: none"
        for start, found in column.knee_by_range_start
    )
    return sizes + (
        '<p id="recommendation" class="caveat"><b>The knee method is a weak guide.</b> Its '
        f"largest knee is at {column.knee.size:,} rows ({html.esc(column.column)}), "
        f"{a.recommended_fraction:.2%} of {a.total_rows:,} rows, which it would suggest for test "
        "and for validation each. But the knee follows the range of sample sizes, not the data: "
        f"with the curve starting elsewhere it moves ({moved}), and every column's SEM falls the "
        'same way. See <a href="#split-caveats">where this method is weak</a>.</p>'
    )


def dbt_tests_section(report: QualityReport) -> html.Section:
    run = report.dbt_run
    if run is None:
        return html.Section(
            "dbt-tests",
            "VACUUM tests (dbt)",
            html.Raw(
                '<p class="caveat">This build recorded no dbt results in the lake and '
                f"<code>{html.esc(report.dbt_target)}</code> has no run_results.json — run "
                "<code>dbt build</code>, then this report again.</p>"
            ),
        )
    intro = (
        f"<p>From <code>{html.esc(report.dbt_results)}</code>: "
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
            attention_section(report),
            summary_section(report),
            build_section(report),
            reconciliation_section(report),
            outcomes_section(report),
            months_section(report),
            distributions_section(report),
            split_analysis_section(report.splits),
            dbt_tests_section(report),
        ],
    )
