"""The data-quality page, built from real marts, opened in headless Chromium from disk."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from reports import split_analysis
from reports.data_quality import write_report
from reports.dbt_artifacts import load_dbt_run
from reports.marts import COLUMNS
from tests.conftest import DbtProject, generate_raw
from tests.pipeline.outputs import current_build, read_mart
from tests.pipeline.split_check import SPLIT_CHECK, shift_test_split_fares, split_check_failures
from tests.reports.conftest import run_module

pytestmark = pytest.mark.slow

SECTIONS = (
    "attention",
    "summary",
    "build",
    "reconciliation",
    "outcomes",
    "months",
    "distributions",
    "split-analysis",
    "dbt-tests",
)


# Row of each column in the means-per-split table: the label, then the features, in order.
COLUMN_ROW = {name: i + 1 for i, name in enumerate(COLUMNS)}


@pytest.fixture(scope="module")
def quality_page(built_lake, dbt_target, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quality-page") / "data_quality.html"
    result = run_module(
        "reports.data_quality",
        "--lake", str(built_lake.lake),
        "--dbt-target", str(dbt_target),
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return out


@pytest.fixture(scope="module")
def page(browser, quality_page):
    return browser.open(quality_page)


@pytest.fixture(scope="module")
def marts(built_lake) -> dict[str, list[dict]]:
    return {name: read_mart(built_lake.lake, name) for name in ("trip_features", "trips_rejected")}


def test_page_renders_offline_without_console_errors(page):
    assert page.script("return document.title") == "DC taxi: data quality and splits"
    for anchor in SECTIONS:
        assert page.script("return document.getElementById(arguments[0]).offsetHeight", anchor) > 0
    assert page.count("figure img") == 4
    assert page.broken_images() == []
    assert page.network_resources() == []
    assert page.console_errors() == []
    assert page.screenshot("data_quality").stat().st_size > 50_000


def test_page_names_the_build_it_reports_on(page, built_lake, dbt_target):
    build = current_build(built_lake.lake)
    assert page.text("#build-invocation td") == build.invocation_id
    assert page.text("#build-snapshot td") == str(build.snapshot_id)
    assert page.text("#build-catalog td") == build.catalog
    published = build.published_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert page.text("#build-published-at td") == published
    for mart, snapshot in build.snapshots.items():
        if mart != "trip_features":
            assert page.text(f"#build-snapshot-{mart} td") == str(snapshot)
    assert build.invocation_id in page.text("header .meta")
    # The tests listed are this build's own: no warning.
    assert load_dbt_run(dbt_target).invocation_id == build.invocation_id
    assert page.count(".tests-other-build") == 0
    assert "of another build" not in page.text("#summary-dbt-tests td")


def test_reconciliation_counts_equal_the_marts(page, marts):
    accepted, rejected = marts["trip_features"], marts["trips_rejected"]
    raw = len(accepted) + len(rejected)
    assert page.number("#recon-raw td:nth-child(2)") == raw
    assert page.number("#recon-raw td:nth-child(3)") == raw
    assert page.number("#summary-raw-lines td") == raw
    assert page.number("#summary-accepted-rows td") == len(accepted)
    assert page.number("#summary-rejected-rows td") == len(rejected)
    assert "reconciled" in page.text("#summary-reconciliation td")
    for split, rows in Counter(row["split"] for row in accepted).items():
        assert page.number(f"#recon-split-{split} td:nth-child(2)") == rows
        assert page.number(f"#recon-split-{split} td:nth-child(3)") == rows
    by_reason = Counter(row["rejection_reason"] for row in rejected)
    for reason, rows in by_reason.items():
        assert page.number(f"#recon-reason-{reason} td:nth-child(3)") == rows
        assert page.number(f"#outcome-{reason} td:nth-child(3)") == rows
    assert page.count("#reconciliation .fail") == 0


def test_month_table_has_one_row_per_raw_file(page, built_lake):
    files = sorted(path.name for path in built_lake.raw.glob("taxi_*.txt"))
    shown = page.script(
        "return Array.from(document.querySelectorAll('#months tbody tr td:first-child'))"
        ".map(td => td.textContent)"
    )
    assert shown == files


def z_test_flags(page) -> dict[str, str]:
    """{row id: the flag column's text} of the page's z-test table."""
    return page.script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('#z-tests tbody tr'))"
        ".map(tr => [tr.id, tr.lastElementChild.textContent]))"
    )


def test_flagged_splits_are_the_ones_dbt_warned_about(page, dbt_target):
    results = json.loads((dbt_target / "run_results.json").read_text())["results"]
    (dbt_check,) = [r for r in results if r["unique_id"].split(".")[2] == SPLIT_CHECK]
    # The generator's hash-random splits: no warning from dbt, no flag on the page.
    assert (dbt_check["status"], dbt_check["failures"]) == ("pass", 0)
    flags = z_test_flags(page)
    assert len(flags) == 2 * 9  # validation and test, label + 8 features
    assert list(flags.values()).count("flagged") == 0
    assert page.count("#attention-z-tests") == 0
    assert "Where this method is weak" in page.text("#split-caveats")


def test_the_page_uses_the_threshold_dbt_compiled(page, dbt_target):
    """Same alpha, same columns, same m and the same corrected threshold as the dbt test."""
    manifest = json.loads((dbt_target / "manifest.json").read_text())
    (node,) = [n for n in manifest["nodes"].values() if n["name"] == SPLIT_CHECK]
    arguments = node["test_metadata"]["kwargs"]
    assert arguments["alpha"] == split_analysis.ALPHA
    assert arguments["features"] == list(COLUMNS)
    flags = z_test_flags(page)
    # Four months of 2015: pickup_year is constant in train, so it has no z.
    assert {row for row, flag in flags.items() if flag == "constant"} == {
        "z-pickup_year-validation",
        "z-pickup_year-test",
    }
    m = len(flags) - 2
    compiled = re.search(rf"when {m} then ([0-9.e+-]+)", node["compiled_code"])
    dbt_threshold = float(compiled.group(1))
    threshold = split_analysis.bonferroni_z_threshold(split_analysis.ALPHA, m)
    assert dbt_threshold == pytest.approx(threshold, abs=1e-8)
    decision = page.text("#z-decision")
    assert decision.startswith(f"All {m} pairs pass: nothing is flagged.")
    assert f"|z| > {dbt_threshold:.4f}" in decision  # 2.9552
    assert f"\N{GREEK SMALL LETTER ALPHA}/m = 0.05/{m} = {0.05 / m:#.3g}" in decision
    assert f"for the {m} (column, held-out split) pairs compared" in decision


def test_the_knee_is_worded_as_the_weak_guide_it_is(page):
    knee = page.text("#recommendation")
    assert knee.startswith("The knee method is a weak guide.")
    assert "recommended" not in knee
    # No number in bold: the only bold text is the warning itself.
    bold = page.script(
        "return Array.from(document.querySelectorAll('#recommendation b')).map(b => b.textContent)"
    )
    assert bold == ["The knee method is a weak guide."]
    # Beside it, what the configured sizes give: the 95% margin of the mean fare of each split.
    configured = page.text("#configured-splits")
    assert "validation" in configured and "test" in configured
    assert configured.count("known to ±$") == 2


def test_warnings_and_failures_come_first(page, dbt_target):
    order = page.script(
        "return Array.from(document.querySelectorAll('main > section')).map(s => s.id)"
    )
    assert order[0] == "attention"
    run = load_dbt_run(dbt_target)
    not_ok = sorted((t for t in run.tests if t.status_kind != "ok"), key=lambda t: t.status_kind)
    listed = page.script(
        "return Array.from(document.querySelectorAll('#attention li')).map(li => li.id)"
    )
    assert listed == [f"attention-dbt-{t.name}" for t in not_ok]
    if not_ok:
        assert page.count("#attention-none") == 0
    else:
        assert "Nothing needs attention" in page.text("#attention-none")
    # The warned test is in the short list at the top, the full list is below and scrolls nowhere.
    for test in not_ok:
        assert test.name in page.text(f"#attention-dbt-{test.name}")
    assert page.script(
        "const all = document.getElementById('dbt-tests-all');"
        "return all.parentElement.clientHeight >= all.offsetHeight"
    )


def test_numbers_are_formatted_by_what_they_measure(page, marts):
    train = [row for row in marts["trip_features"] if row["split"] == "train"]
    for column in ("origin_lat", "origin_lon", "dest_lat", "dest_lon"):
        mean = sum(row[column] for row in train) / len(train)
        shown = page.text(f"#split-means tbody tr:nth-child({COLUMN_ROW[column]}) td:nth-child(2)")
        assert re.fullmatch(r"-?\d+\.\d{5}", shown), shown  # degrees to 5 decimals, not "38.9"
        assert float(shown) == pytest.approx(mean, abs=0.51e-5)
    fare = sum(row["fare_amount"] for row in train) / len(train)
    shown = page.text("#split-means tbody tr:nth-child(1) td:nth-child(2)")
    assert re.fullmatch(r"\d+\.\d{3}", shown), shown  # dollars to 3 decimals
    assert float(shown) == pytest.approx(fare, abs=0.51e-3)
    p_values = page.script(
        "return Array.from(document.querySelectorAll('#z-tests tbody td:nth-child(7)'))"
        ".map(td => td.textContent)"
    )
    assert len(p_values) == 18
    numbers = [text for text in p_values if text != "—"]  # "—": a constant column (one year)
    assert len(numbers) >= 16
    for text in numbers:  # 3 significant digits, trailing zeros kept
        assert text == f"{float(text):#.3g}".rstrip("."), text
    raw = len(marts["trip_features"]) + len(marts["trips_rejected"])
    assert page.text("#summary-raw-lines td") == f"{raw:,}"


def test_every_table_fits_the_page(page):
    # At the tests' 1280 px window no table is wider than its section: nothing is cut off.
    overflowing = page.script(
        "return Array.from(document.querySelectorAll('table'))"
        ".filter(t => t.getBoundingClientRect().right > t.closest('section')"
        ".getBoundingClientRect().right).map(t => t.id)"
    )
    assert overflowing == []
    assert page.count("#months thead th") == 4 + 8  # file, raw, accepted, share, each reason


def test_every_dbt_test_is_listed_under_a_principle(page, dbt_target):
    run = load_dbt_run(dbt_target)
    assert run is not None and run.command.startswith("dbt build")
    unclassified = [t.kind for t in run.tests if t.principle == "other"]
    assert unclassified == [], "give them `meta: {vacuum_principle: ...}` in dbt"
    assert page.count("#dbt-tests-all tbody tr") == len(run.tests)
    statuses = Counter(t.status_kind for t in run.tests)
    assert page.number("#dbt-principle-valid td:nth-child(2)") == sum(
        t.principle == "valid" for t in run.tests
    )
    assert f"{statuses['ok']} passed" in page.text("#summary-dbt-tests td")
    unit_tests = [t.name for t in run.tests if t.principle == "unit test"]
    assert unit_tests and len(set(unit_tests)) == len(unit_tests)  # each by its own name
    assert all(name.startswith("test_") for name in unit_tests)


def test_feature_stats_equal_train_recomputed(page):
    assert page.count("#split-means tbody tr") == 9
    assert page.count("#split-means .fail") == 0


def test_split_analysis_cli_prints_the_same_analysis(built_lake, marts):
    result = run_module(
        "reports.split_analysis", "--data", str(built_lake.lake / "trip_features"), "--json"
    )
    assert result.returncode == 0, result.stderr
    analysis = json.loads(result.stdout)
    assert analysis["total_rows"] == len(marts["trip_features"])
    assert analysis["split_rows"] == dict(Counter(r["split"] for r in marts["trip_features"]))
    assert 0 < analysis["recommended_fraction"] <= 1
    assert set(analysis["label_margins"]) == {"validation", "test"}
    text = run_module("reports.split_analysis", "--data", str(built_lake.lake / "trip_features"))
    assert "Knee method (a weak guide, see below)" in text.stdout
    assert "95% margin of error of each split's mean fare_amount" in text.stdout
    assert "Where this method is weak" in text.stdout


def test_missing_marts_name_the_fix(tmp_path):
    lake = tmp_path / "lake"
    result = run_module("reports.data_quality", "--lake", str(lake), "--out", "unused.html")
    assert result.returncode == 2
    assert "run `dbt build` first" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_module("reports.split_analysis", "--data", str(lake / "trip_features"))
    assert result.returncode == 2 and "run `dbt build` first" in result.stderr
    assert not (tmp_path / "catalog.db").exists()  # a reader never creates a catalog


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--snapshot", "12345", "is not a published build"),
        ("--as-of", "2001-01-01T00:00:00Z", "was published by"),
        ("--as-of", "yesterday", "is not an ISO 8601 time"),
    ],
)
def test_a_build_that_cannot_be_pinned_is_one_line(built_lake, tmp_path, option, value, message):
    result = run_module(
        "reports.data_quality",
        "--lake", str(built_lake.lake),
        option, value,
        "--out", str(tmp_path / "unused.html"),
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "unused.html").exists()


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory) -> tuple[DbtProject, list[dict]]:
    """A lake built twice from different raw files; per build: snapshot, rows, invocation."""
    project = DbtProject(tmp_path_factory.mktemp("two-builds"), "local")
    project.raw.mkdir()
    builds = []
    for rows, months, seed in ((4_000, "2015-01:2015-02", 5), (6_000, "2015-01:2015-03", 6)):
        generate_raw(project.raw, rows=rows, months=months, seed=seed)
        project.build()
        build = current_build(project.lake)
        builds.append(
            {
                "snapshot": build.snapshot_id,
                "invocation": build.invocation_id,
                "published_at": build.published_at,
                "accepted": sum(f.rows for f in build.data_files("trip_features")),
                "rejected": sum(f.rows for f in build.data_files("trips_rejected")),
            }
        )
    return project, builds


def report_on(project: DbtProject, build: dict, out: Path) -> Path:
    """`python -m reports.data_quality` on one build of `project`'s lake, by its snapshot."""
    result = run_module(
        "reports.data_quality",
        "--lake", str(project.lake),
        "--dbt-target", str(project.root / "dbt_target"),
        "--snapshot", str(build["snapshot"]),
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_snapshot_reports_the_older_build(browser, two_builds, tmp_path):
    project, (first, second) = two_builds
    assert first["snapshot"] != second["snapshot"]
    assert first["accepted"] != second["accepted"]
    page = browser.open(report_on(project, first, tmp_path / "older.html"))
    assert page.text("#build-invocation td") == first["invocation"]
    assert page.text("#build-snapshot td") == str(first["snapshot"])
    assert page.number("#summary-accepted-rows td") == first["accepted"]
    assert page.number("#summary-rejected-rows td") == first["rejected"]
    assert page.number("#summary-raw-lines td") == first["accepted"] + first["rejected"]
    assert page.count("#reconciliation .fail") == 0
    # The tests shown are the older build's own, recorded in the lake when it published,
    # though the target's run_results.json is the second build's.
    assert page.count(".tests-other-build") == 0
    assert f"_builds/{first['invocation']}/run_results.json" in page.text("#dbt-tests p")
    assert first["invocation"] in page.text("#dbt-tests p")
    assert page.console_errors() == []
    page.screenshot("data_quality_older_build")


def test_a_build_without_recorded_artifacts_shows_the_targets_tests_as_another_builds(
    browser, two_builds, tmp_path
):
    project, (first, second) = two_builds
    recorded = project.lake / "_builds" / first["invocation"]
    hidden = tmp_path / "hidden"
    recorded.rename(hidden)  # as for a build made on Athena, or before builds recorded them
    try:
        out = report_on(project, first, tmp_path / "older.html")
    finally:
        hidden.rename(recorded)
    page = browser.open(out)
    # run_results.json in the target is the second build's: the page says its tests are not
    # of the build it shows.
    assert page.count(".tests-other-build") == 2  # in the summary and above the tests
    assert second["invocation"] in page.text("#dbt-tests .tests-other-build")
    assert "of another build" in page.text("#summary-dbt-tests td")
    assert second["invocation"] in page.text("#attention-other-build")  # and at the top
    # dbt's warnings are the second build's: the pairs this page's own z-tests flag are never
    # shown as what dbt warned about.
    dbt_items = page.script(
        "return Array.from(document.querySelectorAll('#attention li[id^=\"attention-dbt-\"]'))"
        ".map(li => li.textContent)"
    )
    assert not any("Flagged:" in item for item in dbt_items)
    assert page.console_errors() == []
    page.screenshot("data_quality_older_build")


def test_as_of_and_the_default_pick_the_build_current_then(two_builds, tmp_path):
    project, (first, second) = two_builds
    target = project.root / "dbt_target"
    as_of = first["published_at"] + (second["published_at"] - first["published_at"]) / 2
    page = write_report(project.lake, target, tmp_path / "as_of.html", as_of=as_of).read_text()
    assert (
        f'id="build-invocation"><th>dbt invocation id</th><td><code>{first["invocation"]}' in page
    )
    page = write_report(project.lake, target, tmp_path / "now.html").read_text()
    assert (
        f'id="build-invocation"><th>dbt invocation id</th><td><code>{second["invocation"]}' in page
    )
    assert "tests-other-build" not in page


def test_split_analysis_reads_the_pinned_build(two_builds):
    project, (first, second) = two_builds
    data = str(project.lake / "trip_features")
    for build, extra in ((first, ["--snapshot", str(first["snapshot"])]), (second, [])):
        result = run_module("reports.split_analysis", "--data", data, "--json", *extra)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["total_rows"] == build["accepted"]


def test_reports_cli_takes_a_snapshot(two_builds, tmp_path):
    project, (first, _) = two_builds
    result = run_module(
        "reports",
        "--lake", str(project.lake),
        "--snapshot", str(first["snapshot"]),
        "--storage", str(tmp_path / "no-study.journal"),
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2  # no study: the tuning page is skipped
    assert result.stdout.split() == [str(tmp_path / "data_quality.html")]
    assert first["invocation"] in (tmp_path / "data_quality.html").read_text()


@pytest.fixture(scope="module")
def biased_build(tmp_path_factory, request) -> tuple[DbtProject, Path]:
    """The report fixture's raw data with every test-split fare $1 higher, built with
    `dbt build --store-failures`, and its data-quality page."""
    project = DbtProject(
        tmp_path_factory.mktemp("biased-lake"), request.config.getoption("--dbt-target")
    )
    project.raw.mkdir()
    generate_raw(project.raw, rows=20_000, months="2015-01:2015-04", seed=11)
    assert shift_test_split_fares(project.raw, 1.0) > 0
    built = project.dbt("build", "--store-failures")
    assert built.returncode == 0, built.output[-4000:]
    out = project.root / "data_quality.html"
    result = run_module(
        "reports.data_quality",
        "--lake", str(project.lake),
        "--dbt-target", str(project.root / "dbt_target"),
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return project, out


def test_a_biased_split_is_flagged_as_dbt_failed_it(browser, biased_build):
    project, out = biased_build
    failures = split_check_failures(project)
    assert [(row["feature_name"], row["split"]) for row in failures] == [("fare_amount", "test")]
    (failure,) = failures
    page = browser.open(out)
    flags = z_test_flags(page)
    assert [row for row, flag in flags.items() if flag == "flagged"] == ["z-fare_amount-test"]
    z, p = f"{failure['z_score']:.2f}", f"{failure['p_value']:#.3g}"
    assert page.text("#z-fare_amount-test td:nth-child(6)") == z
    assert page.text("#z-fare_amount-test td:nth-child(7)") == p
    m = failure["comparisons"]
    decision = page.text("#z-decision")
    assert decision.startswith(f"1 of {m} pairs flagged.")
    assert f"|z| > {failure['z_threshold']:.4f}" in decision
    assert f"0.05/{m} = {failure['p_value_threshold']:#.3g}" in decision
    # At the top: what dbt warned about, with the pair's numbers and no excuse.
    warned = page.text(f"#attention-dbt-{SPLIT_CHECK}")
    assert f"Flagged: fare_amount in test (z = {z}, p = {p})." in warned
    assert "expected" not in warned
    assert page.console_errors() == []
    page.screenshot("data_quality_biased_split")
