"""`dbt docs generate --static` makes one file that opens offline from disk in a real browser."""

from __future__ import annotations

import pytest

from reports import html
from reports.data_quality import write_report
from reports.dbt_artifacts import load_dbt_run

pytestmark = pytest.mark.slow

# dbt-docs' own page asks for two URLs that are unrendered templates: `{{ getIcon(...) }}` in
# img src attributes (before Angular renders them) and `${require('./assets/favicons/...')}` for
# the favicon. Over file:// Chromium logs each as a failed load. Harmless, and not ours.
DBT_DOCS_NOISE = ("getIcon(", "require('./assets/favicons/")


@pytest.fixture(scope="module")
def docs_target(built_lake, tmp_path_factory):
    # Its own target folder: `docs generate` rewrites run_results.json (see the last test).
    target = tmp_path_factory.mktemp("docs-target")
    result = built_lake.dbt("docs", "generate", "--static", "--target-path", str(target))
    assert result.returncode == 0, result.output[-3000:]
    return target


def test_static_docs_show_the_marts_offline(browser, docs_target):
    page = browser.open(docs_target / "static_index.html", "#!/model/model.dc_taxi.trip_features")
    page.wait_for_text("One row per accepted trip")  # the model's description
    page.wait_for_text("fare_amount")  # its columns
    page.wait_for_text("trips_rejected")  # the project tree
    assert page.network_resources() == []
    errors = [e for e in page.console_errors() if not any(n in e for n in DBT_DOCS_NOISE)]
    assert errors == []
    page.screenshot("dbt_docs_trip_features")


def test_docs_open_on_the_projects_overview(browser, docs_target):
    page = browser.open(docs_target / "static_index.html", "#!/overview")
    page.wait_for_text("DC taxi lakehouse")  # dbt_project/models/overview.md, not dbt's stock page
    text = page.script("return document.body.innerText")
    assert "Welcome!" not in text
    for heading in ("The layers", "The marts", "The lake"):
        assert heading in text
    marts = ("trip_features", "trips_rejected", "feature_stats", "data_quality_summary")
    links = page.script(
        "return Array.from(document.querySelectorAll('a[href*=\"#!/model/\"]'))"
        ".map(a => a.getAttribute('href'))"
    )
    for mart in marts:
        assert f"#!/model/model.dc_taxi.{mart}" in links
    errors = [e for e in page.console_errors() if not any(n in e for n in DBT_DOCS_NOISE)]
    assert errors == []
    page.screenshot("dbt_docs_overview")
    # The overview's link opens the mart's own page.
    page.driver.execute_script(
        "document.querySelector('a[href=\"#!/model/model.dc_taxi.trip_features\"]').click()"
    )
    page.wait_for_text("One row per accepted trip")


def test_docs_generate_after_the_build_leaves_the_quality_pages_tests_whole(
    built_lake, docs_target, tmp_path
):
    run = load_dbt_run(docs_target)
    assert run is not None and "docs generate" in run.command
    assert run.tests == ()  # generate lists tests as "success" without running them
    # The page reads the tests the build recorded in the lake, not the target's last command.
    build_run = load_dbt_run(built_lake.root / "dbt_target")
    assert build_run.tests
    page = write_report(built_lake.lake, docs_target, tmp_path / "page.html").read_text()
    assert "ran no tests" not in page
    assert "tests-other-build" not in page
    for test in build_run.tests:
        assert html.long_name(test.name) in page
