"""Incremental builds against full rebuilds, with real dbt builds into a real Iceberg lake.

One lake is built step by step as raw files arrive, change, duplicate each other and go; after
every step its published marts must equal, row by row, a full build of the same raw files into
a fresh lake (`dbt build --full-refresh` is the same code path as a first build).
"""

from __future__ import annotations

import html
import math
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from lakehouse.increment import read_increment
from lakehouse.publish import PUBLISH_PAUSE_ENV
from tests.conftest import REPO_ROOT, DbtProject
from tests.lakehouse.test_lake_cli import lake_cli
from tests.lakehouse.test_write_audit_publish import kill_when, start_build
from tests.pipeline.outputs import current_build, read_table
from training.lineage import raw_tags

pytestmark = pytest.mark.slow

ROWS_PER_MONTH = 2_500
# A rule that changes rows (trips of 2015-01-01 leave the accepted range), unit tests unchanged.
LATER_START = {"pickup_date_min": "2015-01-02"}
EXACT_MARTS = ("trip_features", "trips_rejected", "data_quality_summary", "model_performance")


def generate(out: Path, months: str, seed: int = 11) -> None:
    """Months of raw files; a month's bytes depend only on seed, month and rows per month."""
    subprocess.run(
        [sys.executable, "-m", "scripts.generate_raw", "--rows-per-month", str(ROWS_PER_MONTH),
         "--months", months, "--seed", str(seed), "--out", str(out), "--quiet"],
        cwd=REPO_ROOT,
        check=True,
    )  # fmt: skip


def published_rows(lake: Path) -> dict[str, Counter]:
    """Every published mart as a multiset of rows (feature_stats: see `same_stats`)."""
    build = current_build(lake)
    return {
        name: Counter(tuple(sorted(row.items())) for row in read_table(build, name).to_pylist())
        for name in (*EXACT_MARTS, "feature_stats")
    }


def same_stats(a: Counter, b: Counter) -> bool:
    """feature_stats rows equal, floats to 1e-9 relative: a mean's or a deviation's last bits
    depend on the order DuckDB adds the rows in, in a full build too."""

    def close(x: object, y: object) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-9)
        return x == y

    rows_a, rows_b = sorted(a.elements()), sorted(b.elements())
    return len(rows_a) == len(rows_b) and all(
        all(ka == kb and close(va, vb) for (ka, va), (kb, vb) in zip(ra, rb, strict=True))
        for ra, rb in zip(rows_a, rows_b, strict=True)
    )


def assert_equal_to_full_build(project: DbtProject, tmp_path: Path, step: str) -> None:
    full = DbtProject(tmp_path / f"full_{step}", project.target)
    full.root.mkdir()
    full.build(raw=project.raw)
    assert_same_rows(published_rows(project.lake), published_rows(full.lake), step)


def assert_same_rows(incremental: dict, rebuilt: dict, step: str) -> None:
    """Every mart row for row; feature_stats as `same_stats` compares it (a rebuild of the same
    rows may change a mean's last bits)."""
    for name in EXACT_MARTS:
        assert incremental[name] == rebuilt[name], f"{name} differs from a full build ({step})"
    assert same_stats(incremental["feature_stats"], rebuilt["feature_stats"]), step
    assert sum(incremental["trip_features"].values()) > 0


def last_record(project: DbtProject) -> dict:
    record = read_increment(str(project.lake), current_build(project.lake).invocation_id)
    assert record is not None
    return record


def row_text(page: Path, row_id: str) -> str:
    """The value cell of one row of the page's key-value tables, as text."""
    found = re.search(rf'<tr id="{row_id}"><th>[^<]*</th><td[^>]*>(.*?)</td>', page.read_text())
    assert found, row_id
    return html.unescape(re.sub("<[^>]+>", "", found[1]))


def data_lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)[1:]


@pytest.fixture
def project(tmp_path, request) -> DbtProject:
    project = DbtProject(tmp_path / "incremental", request.config.getoption("--dbt-target"))
    project.raw.mkdir(parents=True)
    generate(project.raw, "2015-01:2015-03")
    result = project.build()
    assert "lake: full build of 3 raw file(s) — no published build to add to" in result.output
    return project


def test_each_increment_equals_a_full_build(project, tmp_path):
    raw = project.raw
    # A new month: only it is read.
    generate(raw, "2015-04")
    result = project.build()
    record = last_record(project)
    assert (record["mode"], record["added"], record["reread"]) == (
        "incremental",
        ["taxi_2015_04.txt"],
        ["taxi_2015_04.txt"],
    )
    assert "raw files 1 new, 0 changed, 0 removed; re-reading 1" in result.output
    assert_equal_to_full_build(project, tmp_path, "new_month")
    # The data-quality page and the MLflow lineage tags say what the build added.
    page = tmp_path / "quality.html"
    report = subprocess.run(
        [sys.executable, "-m", "reports.data_quality", "--lake", str(project.lake),
         "--dbt-target", str(project.root / "dbt_target"), "--out", str(page)],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert row_text(page, "build-raw-added") == "taxi_2015_04.txt"
    assert row_text(page, "build-raw-reread") == "taxi_2015_04.txt"
    assert row_text(page, "build-raw-mode").startswith("4 file(s), incremental build on ")
    tags = raw_tags(current_build(project.lake))
    assert (tags["raw.build"], tags["raw.added"], tags["raw.files"]) == (
        "incremental",
        "taxi_2015_04.txt",
        "4",
    )

    # Two months at once.
    generate(raw, "2015-05:2015-06")
    project.build()
    assert last_record(project)["added"] == ["taxi_2015_05.txt", "taxi_2015_06.txt"]
    assert_equal_to_full_build(project, tmp_path, "two_months")

    # A month delivered again with other content replaces that month's rows.
    other = tmp_path / "other"
    generate(other, "2015-02", seed=99)
    shutil.copy(other / "taxi_2015_02.txt", raw / "taxi_2015_02.txt")
    project.build()
    record = last_record(project)
    assert (record["added"], record["changed"]) == ([], ["taxi_2015_02.txt"])
    assert_equal_to_full_build(project, tmp_path, "changed_month")

    # New files holding lines of published months and of themselves: one named before every
    # other (its copies become the kept ones, the published ones turn into duplicates) and
    # one after (its copies are the duplicates).
    march, january = data_lines(raw / "taxi_2015_03.txt"), data_lines(raw / "taxi_2015_01.txt")
    generate(other, "2015-07")
    july = (other / "taxi_2015_07.txt").read_text()
    header = july.splitlines(keepends=True)[0]
    (raw / "taxi_2014_12.txt").write_text(header + "".join(march[:40]) + march[5] + march[5])
    (raw / "taxi_2015_07.txt").write_text(july + "".join(january[:30]) + january[0])
    result = project.build()
    record = last_record(project)
    assert record["added"] == ["taxi_2014_12.txt", "taxi_2015_07.txt"]
    # March is re-read (its copies are no longer first); January is not (it stays first).
    assert "taxi_2015_03.txt" in record["reread"]
    assert "taxi_2015_01.txt" not in record["reread"]
    assert_equal_to_full_build(project, tmp_path, "duplicates")
    reasons = Counter(
        (row["source_file"], row["rejection_reason"])
        for row in read_table(current_build(project.lake), "trips_rejected").to_pylist()
    )
    assert reasons[("taxi_2014_12.txt", "duplicate")] >= 1  # march[5] twice more
    assert reasons[("taxi_2015_03.txt", "duplicate")] >= 35

    # A month removed from the raw folder: its rows leave the lake, and the build says so.
    (raw / "taxi_2015_05.txt").unlink()
    result = project.build()
    record = last_record(project)
    assert record["removed"] == ["taxi_2015_05.txt"]
    assert "1 removed" in result.output
    assert_equal_to_full_build(project, tmp_path, "removed_month")

    # Nothing new: a new build of the same rows, every data file as it was.
    before = current_build(project.lake)
    result = project.build()
    after = current_build(project.lake)
    record = last_record(project)
    assert (record["added"], record["changed"], record["removed"], record["reread"]) == (
        [],
        [],
        [],
        [],
    )
    assert after.invocation_id != before.invocation_id
    for name in EXACT_MARTS[:3]:
        assert [f.uri for f in after.data_files(name)] == [f.uri for f in before.data_files(name)]
    assert_equal_to_full_build(project, tmp_path, "nothing_new")


def test_changed_rules_or_full_refresh_rebuild_everything(project):
    generate(project.raw, "2015-04")
    result = project.build(extra_vars=LATER_START)
    assert "the rules changed since the published build" in result.output
    assert last_record(project)["mode"] == "full"
    project.build(extra_vars=LATER_START)
    assert last_record(project)["mode"] == "incremental"
    # Housekeeping keeps the files the current build kept from the builds before it.
    before = published_rows(project.lake)
    done = lake_cli(project, "maintain", "--keep", "1", "--grace-hours", "0")
    assert done.returncode == 0, done.stderr
    assert published_rows(project.lake) == before
    project.build(extra_vars=LATER_START)  # the current build's record survived it too
    assert last_record(project)["mode"] == "incremental"
    assert_same_rows(published_rows(project.lake), before, "after maintain")
    result = project.dbt("build", "--full-refresh", extra_vars=LATER_START)
    assert result.returncode == 0, result.output[-3000:]
    assert "full build of 4 raw file(s) — --full-refresh" in result.output


def test_a_killed_incremental_build_leaves_the_previous_build_current(project, tmp_path):
    before = published_rows(project.lake)
    invocation = current_build(project.lake).invocation_id
    generate(project.raw, "2015-04")
    process = start_build(project, project.raw, {PUBLISH_PAUSE_ENV: "30"})
    output = kill_when(process, "lake: publishing build")
    assert process.returncode == -signal.SIGKILL, output[-2000:]
    assert "incremental build on" in output
    assert current_build(project.lake).invocation_id == invocation
    assert published_rows(project.lake) == before
    # The next build still adds the month, and equals a full build.
    project.build()
    assert last_record(project)["added"] == ["taxi_2015_04.txt"]
    assert_equal_to_full_build(project, tmp_path, "after_kill")
