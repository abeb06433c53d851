"""`python -m lakehouse`: list the published builds, roll back to one, and keep the last N
(maintain), on a lake that three real `dbt build`s published and one failed build left files in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.build_artifacts import BUILDS_FOLDER
from tests.conftest import REPO_ROOT, DbtProject, generate_raw
from tests.lakehouse.test_write_audit_publish import fingerprint
from tests.pipeline.outputs import current_build, read_table

pytestmark = pytest.mark.slow


def lake_cli(project: DbtProject, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lakehouse", "--lake", str(project.lake), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def lake(tmp_path_factory, request):
    """Three published builds (oldest first) and a failed one's leftovers."""
    target = request.config.getoption("--dbt-target")
    project = DbtProject(tmp_path_factory.mktemp("lake_cli"), target)
    invocations = []
    for seed in (1, 2, 3):
        raw = project.root / f"raw{seed}"
        generate_raw(raw, rows=3_000 + 1_000 * seed, months="2016-01:2016-02", seed=seed)
        project.build(raw=raw)
        invocations.append(current_build(project.lake).invocation_id)
    failed = project.dbt("build", raw=project.root / "raw1", extra_vars={"fare_min": 1000})
    assert failed.returncode != 0 and "lake: NOT published" in failed.output
    return project, invocations


def test_builds_lists_every_published_build_and_marks_the_current_one(lake):
    project, invocations = lake
    listed = lake_cli(project, "builds")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert [row.split()[1] for row in rows] == invocations
    assert [row.endswith("<- current") for row in rows] == [False, False, True]


def test_rollback_makes_an_earlier_build_current_and_a_build_then_publishes(lake):
    project, invocations = lake
    newest = fingerprint(project.lake)
    back = lake_cli(project, "rollback", "--to", invocations[0])
    assert back.returncode == 0, back.stderr
    older = fingerprint(project.lake)
    assert older["invocation"] == invocations[0]
    assert older["splits"]["train"][0] < newest["splits"]["train"][0]  # the smaller raw
    # A build started from the rolled-back state publishes (its base is what readers see).
    project.build(raw=project.root / "raw3")
    rebuilt = fingerprint(project.lake)
    assert rebuilt["invocation"] not in invocations
    assert rebuilt["splits"] == newest["splits"]  # same raw lines, same rows in every split
    invocations.append(rebuilt["invocation"])

    unknown = lake_cli(project, "rollback", "--to", "no-such-build")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: no published build no-such-build — `python -m lakehouse builds` lists them"
    ]


def test_maintain_keeps_the_last_builds_whole_and_removes_the_rest(lake):
    project, invocations = lake
    before = files_under(project.lake)
    current = fingerprint(project.lake)
    dry = lake_cli(project, "maintain", "--keep", "2", "--grace-hours", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove" in dry.stdout
    assert files_under(project.lake) == before

    done = lake_cli(project, "maintain", "--keep", "2", "--grace-hours", "0")
    assert done.returncode == 0, done.stderr
    assert f"{BUILDS_FOLDER}: removed" in done.stdout
    removed = before - files_under(project.lake)  # (its own commits add metadata files)
    # The last two builds made current: the rebuild and, before it, the one rolled back to.
    kept = [invocations[0], invocations[-1]]
    dropped = {p.parent.name for p in removed if p.parent.parent.name == BUILDS_FOLDER}
    assert dropped == set(invocations) - set(kept)
    listed = lake_cli(project, "builds").stdout.splitlines()[1:]
    assert {row.split()[1] for row in listed} == set(kept)  # (a rollback lists a build again)
    # Readers see the same build, every file of it still there; the build before it too.
    assert fingerprint(project.lake) == current
    assert sorted(p.name for p in (project.lake / BUILDS_FOLDER).iterdir()) == sorted(kept)
    back = lake_cli(project, "rollback", "--to", kept[0])
    assert back.returncode == 0, back.stderr
    assert read_table(current_build(project.lake), "trip_features").num_rows > 0
    # Only the kept builds' data files remain (the failed build's staged files are gone too;
    # empty folders are left: a build may have just created its own).
    data = project.lake / "trip_features" / "data"
    assert {p.relative_to(data).parts[0] for p in files_under(data)} == set(kept)
