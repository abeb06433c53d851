"""Write-audit-publish with real dbt builds, a real Iceberg catalog and real kills.

Whatever happens to a build (killed at any moment, a failing test, a concurrent build), readers
see exactly the last published build: the same snapshot and the same rows, split by split.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from lakehouse.builds import pin_build
from lakehouse.catalog import lake_uri, load_mart, open_catalog
from lakehouse.publish import PUBLISH_PAUSE_ENV, audit_branch
from reports.dbt_artifacts import load_build_dbt_run, load_dbt_run
from scripts.dbt_subprocess import dbt_executable
from tests.conftest import REPO_ROOT, DbtProject, generate_raw
from tests.pipeline.outputs import current_build, read_mart, read_table
from training import train

pytestmark = pytest.mark.slow


@dataclass
class SharedLakeProject(DbtProject):
    """A workspace of its own (DuckDB file, target dir, raw folder) writing into `lake_root`."""

    lake_root: Path | None = None

    @property
    def lake(self) -> Path:
        return self.lake_root or self.root / "lake"


def fingerprint(lake: Path) -> dict:
    """The current build as readers see it: snapshot ids and a hash of each split's rows."""
    build = current_build(lake)
    rows = read_table(build, "trip_features").to_pylist()
    per_split = {}
    for split in ("train", "validation", "test"):
        keys = sorted(
            f"{r['trip_key']}|{r['fare_amount']}|{r['pickup_hour']}"
            for r in rows
            if r["split"] == split
        )
        per_split[split] = (len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest())
    rejected = sorted(r["trip_key"] for r in read_mart(lake, "trips_rejected"))
    return {
        "invocation": build.invocation_id,
        "snapshots": build.snapshots,
        "splits": per_split,
        "rejected": hashlib.sha256("".join(rejected).encode()).hexdigest(),
    }


@pytest.fixture(scope="module")
def published(tmp_path_factory, request):
    """A lake with one published build, and a second raw folder (more rows) to rebuild from."""
    project = DbtProject(tmp_path_factory.mktemp("wap"), request.config.getoption("--dbt-target"))
    generate_raw(project.raw, rows=12_000, months="2016-01:2016-03", seed=3)
    project.build()
    bigger = project.root / "raw_bigger"
    generate_raw(bigger, rows=18_000, months="2016-01:2016-04", seed=4)
    return project, bigger


def start_build(project: DbtProject, raw: Path, extra_env: dict | None = None):
    dbt_vars = f"{{raw_path: '{raw}', lake_path: '{project.lake}'}}"
    command = [dbt_executable(), "build", "--target", project.target]
    return subprocess.Popen(
        [*command, "--vars", dbt_vars],
        cwd=REPO_ROOT,
        env={**project.env(), **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen, marker: str) -> tuple[str, bool]:
    """The build's output up to the first line containing `marker`; whether that line came."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen), True
    return "".join(seen), False


def kill_when(process: subprocess.Popen, marker: str) -> str:
    """SIGKILL the build as soon as a line containing `marker` appears; its output so far."""
    output, seen = read_until(process, marker)
    if seen:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=120)
    return output


@pytest.mark.parametrize(
    "marker",
    [
        "START sql table model main.int_trips_validated",
        "START sql view model main.trip_features",
        "START sql view model main.trips_rejected",
        "START sql view model main.feature_stats",
        "START sql view model main.data_quality_summary",
        "START test assert_raw_rows_reconcile",
        "lake: publishing build",
    ],
    ids=["intermediate", "trip_features", "trips_rejected", "feature_stats", "summary",
         "tests", "publish"],
)  # fmt: skip
def test_a_killed_build_leaves_the_previous_build_current(published, marker):
    project, bigger = published
    before = fingerprint(project.lake)
    # During publish: hold it after every new metadata file is written, before the swap.
    process = start_build(project, bigger, {PUBLISH_PAUSE_ENV: "30"})
    output = kill_when(process, marker)
    assert process.returncode == -signal.SIGKILL, output[-2000:]
    assert marker in output
    assert fingerprint(project.lake) == before


def test_after_kills_training_reads_the_previous_build_and_a_rebuild_publishes(published, tmp_path):
    project, bigger = published
    before = fingerprint(project.lake)
    argv = [
        "--data", str(project.lake / "trip_features"),
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--max-epochs", "1", "--no-progress",
    ]  # fmt: skip
    assert train.main(argv) == 0
    project.build(raw=bigger)  # the DuckDB file and the lake recover from every kill
    after = fingerprint(project.lake)
    assert after["invocation"] != before["invocation"]
    assert sum(n for n, _ in after["splits"].values()) > sum(
        n for n, _ in before["splits"].values()
    )


def test_a_failing_error_test_publishes_nothing(published, tmp_path):
    project, _ = published
    before = fingerprint(project.lake)
    raw = tmp_path / "raw_seconds"
    raw.mkdir()
    for source in sorted(project.raw.glob("taxi_*.txt")):
        (raw / source.name).write_bytes(source.read_bytes())
    # One more month whose times carry seconds: every row is rejected, so the month
    # contributes no accepted row — an error-severity test fails.
    month = (raw / "taxi_2016_01.txt").read_text().splitlines()
    header, lines = month[0], month[1:]
    with_seconds = [line.replace(":00|", ":00:00|") for line in lines]
    (raw / "taxi_2016_05.txt").write_text("\n".join([header, *with_seconds]) + "\n")
    result = project.dbt("build", raw=raw)
    assert result.returncode != 0
    assert "lake: NOT published" in result.output
    assert fingerprint(project.lake) == before
    # The target's run_results.json is now the failed build's; the published build's own
    # test results, recorded in the lake, are what readers get.
    failed = load_dbt_run(project.root / "dbt_target")
    assert any(test.status_kind == "fail" for test in failed.tests)
    recorded = load_build_dbt_run(current_build(project.lake))
    assert recorded.invocation_id == before["invocation"] != failed.invocation_id
    assert recorded.tests and not any(test.status_kind == "fail" for test in recorded.tests)
    assert {test.unique_id for test in recorded.tests} == {test.unique_id for test in failed.tests}


def test_concurrent_builds_into_one_lake_publish_one_build(published, tmp_path):
    project, bigger = published
    before = fingerprint(project.lake)
    other = SharedLakeProject(tmp_path, project.target, lake_root=project.lake)
    # Both builds start from the same published build; holding each publish for a moment
    # makes them overlap, as two long builds would.
    pause = {PUBLISH_PAUSE_ENV: "3"}
    first = start_build(project, project.raw, pause)
    second = start_build(other, bigger, pause)
    outputs = {}

    def collect(name, process):
        outputs[name] = process.communicate(timeout=600)[0]

    threads = [
        threading.Thread(target=collect, args=(name, process))
        for name, process in (("first", first), ("second", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = {"first": first.returncode, "second": second.returncode}
    tails = {name: output[-3000:] for name, output in outputs.items()}
    assert sorted(code == 0 for code in codes.values()) == [False, True], (codes, tails)
    winner = "first" if codes["first"] == 0 else "second"
    loser = "second" if winner == "first" else "first"
    assert "another build" in outputs[loser], tails[loser]
    assert "nothing of this build was published" in outputs[loser], tails[loser]
    after = fingerprint(project.lake)
    assert after["invocation"] != before["invocation"]
    # One build, whole: both marts come from the winner's raw lines, and reconcile with them.
    winner_raw = project.raw if winner == "first" else bigger
    raw_lines = sum(
        len(path.read_text().splitlines()) - 1 for path in winner_raw.glob("taxi_*.txt")
    )
    build = current_build(project.lake)
    accepted = read_table(build, "trip_features").num_rows
    rejected = read_table(build, "trips_rejected").num_rows
    assert accepted + rejected == raw_lines


def test_another_build_staging_while_this_one_publishes_does_not_stop_it(published):
    project, bigger = published
    build = start_build(project, bigger, {PUBLISH_PAUSE_ENV: "5"})
    started, seen = read_until(build, "lake: publish held")
    assert seen, started[-3000:]
    # While the publish is held (its new metadata written, nothing swapped yet), another
    # build stages trip_features: a new branch, main unchanged.
    lake = lake_uri(project.lake)
    table = load_mart(open_catalog(lake), lake, "trip_features")
    with table.manage_snapshots() as snapshots:
        snapshots.create_branch(table.metadata.current_snapshot_id, audit_branch("staging"))
    output = build.communicate(timeout=600)[0]
    assert build.returncode == 0, output[-3000:]
    assert current_build(project.lake).invocation_id in output


def test_training_with_an_older_snapshot_reads_that_build(published, tmp_path):
    project, bigger = published
    older = current_build(project.lake)
    older_rows = {
        split: sum(1 for r in read_mart(project.lake, "trip_features") if r["split"] == split)
        for split in ("train", "validation", "test")
    }
    project.build(raw=bigger)
    assert current_build(project.lake).snapshot_id != older.snapshot_id
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [
        "--data", str(project.lake / "trip_features"),
        "--snapshot", str(older.snapshot_id),
        "--tracking-uri", uri,
        "--max-epochs", "1", "--no-progress",
    ]  # fmt: skip
    assert train.main(argv) == 0
    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(experiment_names=["dc-taxi"], output_format="list")
    assert run.data.tags["lake.snapshot_id"] == str(older.snapshot_id)
    assert run.data.tags["dbt.invocation_id"] == older.invocation_id
    for split, rows in older_rows.items():
        assert run.data.tags[f"data.{split}.rows"] == str(rows)
    pinned = pin_build(str(project.lake / "trip_features"), snapshot_id=older.snapshot_id)
    assert pinned.invocation_id == older.invocation_id
    # An unknown snapshot is a one-line error that says where to look.
    assert train.main([*argv[:2], "--snapshot", "12345", *argv[4:]]) == 2


def test_a_rebuild_during_tuning_changes_no_trial(published, tmp_path):
    project, bigger = published
    first = current_build(project.lake)
    train_rows = sum(1 for r in read_mart(project.lake, "trip_features") if r["split"] == "train")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = tmp_path / "tune.log"
    with log.open("w") as output:
        # Trials keep starting for --timeout seconds, long enough for a rebuild to publish.
        tune = subprocess.Popen(
            [
                sys.executable, "-m", "training.tune",
                "--data", str(project.lake / "trip_features"),
                "--tracking-uri", uri,
                "--storage", str(tmp_path / "optuna.journal"),
                "--n-trials", "1000", "--timeout", "150", "--max-epochs", "2",
                "--resident-mb", "0",  # streamed: every epoch re-reads the files
                "--no-progress",
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_trial_runs(tmp_path / "mlflow.db", tune, log)
        project.build(raw=bigger)
        rebuilt = current_build(project.lake)
        assert tune.poll() is None, "tuning ended before the rebuild published: raise --timeout"
        tune.wait(timeout=900)
    finally:
        tune.kill()
    assert tune.returncode == 0, log.read_text()[-3000:]
    assert rebuilt.snapshot_id != first.snapshot_id
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["dc-taxi"], output_format="list")
    trials = [run for run in runs if run.info.run_name.startswith("trial-")]
    published_ms = rebuilt.published_at.timestamp() * 1000
    assert any(run.info.start_time > published_ms for run in trials)  # began after the rebuild
    assert len(runs) == len(trials) + 1  # and the study's parent run
    for run in runs:
        assert run.data.tags["lake.snapshot_id"] == str(first.snapshot_id)
        assert run.data.tags["data.train.rows"] == str(train_rows)


def wait_for_trial_runs(
    database: Path, process: subprocess.Popen, log: Path, timeout: float = 300
) -> None:
    """Block until the tuning process has started its first trial run in MLflow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        if database.exists():
            try:
                with sqlite3.connect(database) as connection:
                    (count,) = connection.execute(
                        "select count(*) from runs where name like 'trial-%'"
                    ).fetchone()
                if count:
                    return
            except sqlite3.OperationalError:
                pass  # schema not created yet
        time.sleep(0.5)
    raise AssertionError("tuning never started a trial")
