"""The data-quality page, built from real marts, opened in headless Chromium from disk."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from reports.dbt_artifacts import load_dbt_run
from tests.pipeline.outputs import read_mart
from tests.reports.conftest import run_module

pytestmark = pytest.mark.slow

SECTIONS = (
    "summary",
    "reconciliation",
    "outcomes",
    "months",
    "distributions",
    "split-analysis",
    "dbt-tests",
)


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


def test_flagged_splits_are_the_ones_dbt_warned_about(page, dbt_target):
    results = json.loads((dbt_target / "run_results.json").read_text())["results"]
    (dbt_check,) = [r for r in results if "splits_are_representative" in r["unique_id"]]
    flagged = page.script(
        "return Array.from(document.querySelectorAll('#z-tests tbody tr'))"
        ".filter(tr => tr.textContent.includes('p < 0.05')).length"
    )
    assert flagged == dbt_check["failures"]
    assert page.count("#z-tests tbody tr") == 2 * 9  # validation and test, label + 8 features
    assert "recommended test and validation fraction" in page.text("#recommendation")
    assert "Where this method is weak" in page.text("#split-analysis .caveat")


def test_every_dbt_test_is_listed_under_a_principle(page, dbt_target):
    run = load_dbt_run(dbt_target)
    assert run is not None and run.command.startswith("dbt build")
    unclassified = [t.kind for t in run.tests if t.principle == "other"]
    assert unclassified == [], "add them to PRINCIPLE_OF_TEST in reports/dbt_artifacts.py"
    assert page.count("#dbt-tests-all tbody tr") == len(run.tests)
    statuses = Counter(t.status_kind for t in run.tests)
    assert page.number("#dbt-principle-valid td:nth-child(2)") == sum(
        t.principle == "valid" for t in run.tests
    )
    assert f"{statuses['ok']} passed" in page.text("#summary-dbt-tests td")


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
    text = run_module("reports.split_analysis", "--data", str(built_lake.lake / "trip_features"))
    assert "recommended test and validation fraction" in text.stdout
    assert "Where this method is weak" in text.stdout


def test_missing_marts_name_the_fix(tmp_path):
    result = run_module("reports.data_quality", "--lake", str(tmp_path), "--out", "unused.html")
    assert result.returncode == 2
    assert "run `dbt build` first" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_module("reports.split_analysis", "--data", str(tmp_path / "trip_features"))
    assert result.returncode == 2 and "run `dbt build` first" in result.stderr
