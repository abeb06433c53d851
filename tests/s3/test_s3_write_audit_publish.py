"""Write-audit-publish on the `s3` target: the lake on a real S3 server keeps its last published
build through a killed build, a failing test and a concurrent build."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from scripts.upload_raw import upload_folder
from tests.conftest import generate_raw
from tests.lakehouse.test_write_audit_publish import fingerprint, kill_when, start_build
from tests.s3.conftest import BUCKET
from tests.s3.test_dbt_s3 import S3DbtProject, reading

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_lake(tmp_path_factory, local_s3):
    """An S3 lake with one published build, and a second raw prefix (more rows)."""
    root = tmp_path_factory.mktemp("s3_wap")
    prefix = local_s3.fresh_prefix("wap")
    raws = {}
    for name, rows, months, seed in (("raw", 8_000, "2016-01:2016-02", 5),
                                     ("raw_bigger", 12_000, "2016-01:2016-03", 6)):  # fmt: skip
        folder = root / name
        generate_raw(folder, rows=rows, months=months, seed=seed)
        raws[name] = f"s3://{BUCKET}/{prefix}/{name}"
        upload_folder(folder, raws[name], client=local_s3.client())
    project = S3DbtProject(
        root / "project", "s3", lake_uri=f"s3://{BUCKET}/{prefix}/lake", s3_env=local_s3.env()
    )
    project.root.mkdir()
    project.build(raw=raws["raw"])
    return project, raws


def failures(output: str) -> str:
    """What a failed dbt build said about each failure (its summary is cut off otherwise)."""
    lines = output.splitlines()
    marks = [i for i, line in enumerate(lines) if "ERROR" in line or "Error" in line]
    return "\n".join(line for i in marks for line in lines[i : i + 4])[-6000:] or output[-2000:]


def current(project: S3DbtProject) -> dict:
    with reading(project):
        return fingerprint(project.lake)


@pytest.mark.parametrize(
    "marker",
    ["START sql view model main.trips_rejected", "lake: publishing build"],
    ids=["during a mart's write", "during publish"],
)
def test_a_killed_s3_build_leaves_the_previous_build_current(s3_lake, marker):
    project, raws = s3_lake
    before = current(project)
    process = start_build(project, raws["raw_bigger"], {"LAKE_PUBLISH_PAUSE_S": "30"})
    output = kill_when(process, marker)
    assert process.returncode == -signal.SIGKILL, output[-2000:]
    assert current(project) == before


def test_a_failing_s3_build_publishes_nothing_and_a_good_one_does(s3_lake):
    project, raws = s3_lake
    before = current(project)
    # fare_min above every fare: no month contributes an accepted row, an error test fails.
    failed = project.dbt("build", raw=raws["raw_bigger"], extra_vars={"fare_min": 1000})
    assert failed.returncode != 0
    assert "lake: NOT published" in failed.output
    assert current(project) == before
    project.build(raw=raws["raw_bigger"])
    after = current(project)
    assert after["invocation"] != before["invocation"]


def test_only_one_of_two_concurrent_s3_builds_publishes(s3_lake, tmp_path):
    project, raws = s3_lake
    other = S3DbtProject(
        tmp_path, "s3", lake_uri=project.lake_uri, s3_env=project.s3_env,
        catalog=project.root / "catalog.db",
    )  # fmt: skip
    pause = {"LAKE_PUBLISH_PAUSE_S": "3"}
    builds = [
        start_build(project, raws["raw"], pause),
        start_build(other, raws["raw_bigger"], pause),
    ]
    with ThreadPoolExecutor(2) as pool:  # read both outputs at once: neither pipe fills up
        outputs = list(pool.map(lambda process: process.communicate(timeout=900)[0], builds))
    codes = [process.returncode for process in builds]
    assert sorted(code == 0 for code in codes) == [False, True], [failures(o) for o in outputs]
    loser = next(output for output, code in zip(outputs, codes, strict=True) if code != 0)
    assert "nothing of this build was published" in loser
    winner = next(output for output, code in zip(outputs, codes, strict=True) if code == 0)
    assert current(project)["invocation"] in winner
