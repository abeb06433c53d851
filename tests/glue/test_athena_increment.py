"""Incremental builds on Athena (lakehouse/athena_build.py, macros/athena_lake.sql), against a
real S3 server (SeaweedFS) and an emulated Glue catalog (moto): the plan from an S3 listing
and the published build's record, its scan estimate, the record written after a publish, and
the Glue/Iceberg mechanism the incremental marts rely on (an audit entry that starts as a copy
of the published table, appended to, invisible to readers until the publish swaps it).

Athena itself cannot run here: the SQL the build sends is checked offline in tests/athena.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import boto3
import pyarrow as pa
import pytest
import yaml

from lakehouse.athena_build import (
    ProjectRules,
    list_s3_raw_files,
    plan_athena_build,
    plan_var,
    project_rules,
    record_published,
    scan_estimate,
)
from lakehouse.build_artifacts import read_artifact
from lakehouse.builds import pin_build
from lakehouse.catalog import NAMESPACE, LakeError, open_catalog
from lakehouse.increment import (
    FULL,
    INCREMENTAL,
    RAW_FILES,
    RULE_FOLDERS,
    read_increment,
    record_increment,
)
from lakehouse.increment import Increment as Plan
from scripts.dbt_subprocess import REPO_ROOT
from tests.athena.conftest import OFFLINE_ENV
from tests.glue.test_glue_lake import AUDIT, INVOCATION, publish, table_input

pytestmark = pytest.mark.servers

LOGIC = "rules-1"
# The marts kept per raw file, and those holding one row per raw line, as the project declares
# them (tests/athena/test_increment_sql.py reads them from the project).
MARTS_BY_RAW_FILE = ("data_quality_summary", "trip_features", "trips_rejected")
KEY_MARTS = ("trip_features", "trips_rejected")


def rules(logic: str = LOGIC) -> ProjectRules:
    return ProjectRules(logic, MARTS_BY_RAW_FILE, KEY_MARTS)


SPLITS = ("train", "validation", "test")


def month_lines(name: str, rows: int, salt: str = "") -> bytes:
    """A raw file's bytes: a header and `rows` distinct lines naming the file."""
    lines = ["header"] + [f"{name}|{salt}|{n}" for n in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def mart_rows(mart: str, files: dict[str, int]) -> pa.Table:
    """Rows of a mart kept per raw file, `files[name]` rows for each raw file."""
    names = [name for name, rows in files.items() for _ in range(rows)]
    keys = [f"{name}-{n}" for name, rows in files.items() for n in range(rows)]
    if mart == "data_quality_summary":
        counts = list(files.values())
        return pa.table(
            {"source_file": list(files), "lake_source_file": list(files), "row_count": counts}
        )
    columns = {"trip_key": keys, "lake_source_file": names}
    if mart == "trip_features":
        columns["split"] = [SPLITS[n % 3] for n in range(len(keys))]
    return pa.table(columns)


@pytest.fixture
def lake(local_s3, aws_env) -> str:
    return f"s3://{local_s3.bucket}/{local_s3.fresh_prefix('lake')}"


@pytest.fixture
def raw(local_s3, aws_env) -> str:
    return f"s3://{local_s3.bucket}/{local_s3.fresh_prefix('raw')}"


@pytest.fixture
def catalog(lake, glue):
    return open_catalog(lake, catalog_uri="glue")


def upload(raw: str, name: str, data: bytes) -> None:
    bucket, _, prefix = raw.removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)


def remove(raw: str, name: str) -> None:
    bucket, _, prefix = raw.removeprefix("s3://").partition("/")
    boto3.client("s3").delete_object(Bucket=bucket, Key=f"{prefix}/{name}")


def publish_build(catalog, glue, lake: str, build: str, files: dict[str, int]) -> None:
    """What a full Athena build leaves: each mart kept per raw file CTAS'ed into the audit
    database at a fresh location, stamped, then swapped in."""
    catalog.create_namespace_if_not_exists(AUDIT)
    for mart in MARTS_BY_RAW_FILE:
        rows = mart_rows(mart, files)
        table = catalog.create_table(
            (AUDIT, mart), schema=rows.schema, location=f"{lake}/{mart}/{uuid.uuid4()}"
        )
        table.append(rows)
        stamp(glue, AUDIT, mart, build)
    publish(glue, MARTS_BY_RAW_FILE)


def stamp(glue, database: str, mart: str, build: str) -> None:
    """stage_to_lake: the Glue parameter naming the build."""
    entry = glue.get_table(DatabaseName=database, Name=mart)["Table"]
    entry["Parameters"][INVOCATION] = build
    glue.update_table(DatabaseName=database, TableInput=table_input(entry))


def record(lake: str, build: str, raw: str, logic: str = LOGIC) -> None:
    files = list_s3_raw_files(raw)
    names = [f.name for f in files]
    plan = Plan(FULL, "test", logic, files, None, reread=names)
    record_increment(lake, build, plan)


@pytest.fixture
def published(catalog, glue, lake, raw) -> str:
    """Two months on S3, built, published and recorded as build A."""
    build = str(uuid.uuid4())
    for name in ("taxi_2016_01.txt", "taxi_2016_02.txt"):
        upload(raw, name, month_lines(name, 5))
    publish_build(catalog, glue, lake, build, {"taxi_2016_01.txt": 5, "taxi_2016_02.txt": 5})
    record(lake, build, raw)
    return build


def test_listing_gives_size_and_etag_of_the_month_files_only(raw):
    upload(raw, "taxi_2016_01.txt", month_lines("a", 3))
    upload(raw, "notes.txt", b"not a month\n")
    upload(raw, "nested/taxi_2016_02.txt", month_lines("b", 3))
    files = list_s3_raw_files(raw)
    assert [f.name for f in files] == ["taxi_2016_01.txt"]
    assert files[0].size == len(month_lines("a", 3)) and files[0].etag and not files[0].sha256


def test_a_new_later_month_is_an_incremental_build_of_that_file_only(catalog, lake, raw, published):
    upload(raw, "taxi_2016_03.txt", month_lines("taxi_2016_03.txt", 7))
    plan = plan_athena_build(catalog, lake, raw, rules(), full_refresh=False)
    assert (plan.mode, plan.added, plan.reread) == (INCREMENTAL, ["taxi_2016_03.txt"], plan.added)
    assert plan_var(plan) == {
        "mode": INCREMENTAL,
        "files": ["taxi_2016_03.txt"],
        "published_build": published,
    }
    assert "re-reading 1, keeping the published rows of 2" in plan.summary()
    # What Athena scans: the new file's raw bytes, and the published keys' stored columns.
    estimate = scan_estimate(catalog, plan, KEY_MARTS)
    assert estimate.raw_bytes == len(month_lines("taxi_2016_03.txt", 7))
    stored = 0
    for mart in KEY_MARTS:
        for task in catalog.load_table((NAMESPACE, mart)).scan().plan_files():
            stored += task.file.file_size_in_bytes
    assert 0 < estimate.key_bytes <= stored
    assert "MiB of raw text" in estimate.summary()


def test_nothing_new_is_an_incremental_build_reading_no_file(catalog, lake, raw, published):
    plan = plan_athena_build(catalog, lake, raw, rules(), full_refresh=False)
    assert (plan.mode, plan.reread) == (INCREMENTAL, [])
    assert plan_var(plan)["files"] == []
    assert scan_estimate(catalog, plan, KEY_MARTS).raw_bytes == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("changed", "taxi_2016_01.txt changed: on Athena a published month is replaced"),
        ("removed", "taxi_2016_02.txt removed"),
        ("earlier", "taxi_2015_12.txt named before the published taxi_2016_02.txt"),
        ("rules", "the rules changed"),
        ("full_refresh", "--full-refresh"),
        ("half_published", "the published marts are from different builds"),
        ("no_record", "recorded no raw files"),
    ],
)
def test_what_the_append_cannot_express_is_a_full_build(
    catalog, glue, lake, raw, published, change, reason
):
    logic, full_refresh = LOGIC, False
    if change == "changed":
        upload(raw, "taxi_2016_01.txt", month_lines("taxi_2016_01.txt", 5, salt="again"))
    elif change == "removed":
        remove(raw, "taxi_2016_02.txt")
    elif change == "earlier":
        upload(raw, "taxi_2015_12.txt", month_lines("taxi_2015_12.txt", 4))
    elif change == "rules":
        logic = "rules-2"
    elif change == "full_refresh":
        full_refresh = True
    elif change == "half_published":
        stamp(glue, NAMESPACE, "trips_rejected", str(uuid.uuid4()))
    elif change == "no_record":
        other = str(uuid.uuid4())
        for mart in MARTS_BY_RAW_FILE:
            stamp(glue, NAMESPACE, mart, other)
    plan = plan_athena_build(catalog, lake, raw, rules(logic), full_refresh)
    assert plan.mode == FULL
    assert reason in plan.reason
    assert plan.reread == [f.name for f in list_s3_raw_files(raw)]
    assert plan_var(plan) == {"mode": FULL}


def test_an_empty_raw_file_is_refused_before_any_build(catalog, lake, raw, published):
    upload(raw, "taxi_2016_03.txt", b"")
    with pytest.raises(LakeError, match=r"taxi_2016_03\.txt under .* empty"):
        plan_athena_build(catalog, lake, raw, rules(), full_refresh=False)


def copy_published_into_audit(catalog, glue, lake: str, mart: str, build: str) -> None:
    """begin_lake_build of an incremental build: an empty placeholder table in the audit
    database, then dbt-athena's swap_table(published, audit) (a Glue UpdateTable copying the
    published entry), so the audit entry names the published Iceberg metadata."""
    placeholder = catalog.create_table(
        (AUDIT, mart),
        schema=pa.schema([("placeholder", pa.int32())]),
        location=f"{lake}/{mart}/placeholder-{build}",
    )
    assert placeholder.location().endswith(f"placeholder-{build}")
    source = glue.get_table(DatabaseName=NAMESPACE, Name=mart)["Table"]
    glue.update_table(DatabaseName=AUDIT, TableInput={**table_input(source), "Name": mart})


def published_rows(lake: str) -> set[str]:
    catalog = open_catalog(lake, catalog_uri="glue")
    build = pin_build(f"{lake}/trip_features", catalog=catalog, marts=MARTS_BY_RAW_FILE)
    return set(build.tables["trip_features"].scan().to_arrow()["trip_key"].to_pylist())


def test_an_appended_copy_stays_invisible_until_published_and_equals_a_full_build(
    catalog, glue, lake, raw, published
):
    before = published_rows(lake)
    published_metadata = {
        mart: glue.get_table(DatabaseName=NAMESPACE, Name=mart)["Table"]["Parameters"][
            "metadata_location"
        ]
        for mart in MARTS_BY_RAW_FILE
    }
    build = str(uuid.uuid4())
    new_month = {"taxi_2016_03.txt": 4}
    for mart in MARTS_BY_RAW_FILE:
        copy_published_into_audit(catalog, glue, lake, mart, build)
        # Athena's INSERT INTO <audit>.<mart>: a commit on the audit entry only.
        catalog.load_table((AUDIT, mart)).append(mart_rows(mart, new_month))
        stamp(glue, AUDIT, mart, build)
        audit = glue.get_table(DatabaseName=AUDIT, Name=mart)["Table"]
        published_entry = glue.get_table(DatabaseName=NAMESPACE, Name=mart)["Table"]
        # Same table location (the files are shared), other metadata: readers see no change.
        assert (
            audit["StorageDescriptor"]["Location"]
            == (published_entry["StorageDescriptor"]["Location"])
        )
        assert published_entry["Parameters"]["metadata_location"] == published_metadata[mart]
        assert audit["Parameters"]["metadata_location"] != published_metadata[mart]
    assert published_rows(lake) == before

    publish(glue, MARTS_BY_RAW_FILE)
    full = mart_rows("trip_features", {"taxi_2016_01.txt": 5, "taxi_2016_02.txt": 5, **new_month})
    assert published_rows(lake) == set(full["trip_key"].to_pylist())
    pinned = pin_build(f"{lake}/trip_features", catalog=catalog, marts=MARTS_BY_RAW_FILE)
    assert pinned.invocation_id == build


def test_a_killed_incremental_build_leaves_the_published_build_readable(
    catalog, glue, lake, raw, published
):
    before = published_rows(lake)
    build = str(uuid.uuid4())
    for mart in MARTS_BY_RAW_FILE:
        copy_published_into_audit(catalog, glue, lake, mart, build)
    catalog.load_table((AUDIT, "trip_features")).append(
        mart_rows("trip_features", {"taxi_2016_03.txt": 4})
    )
    # Killed here. The next build forgets the audit entries in Glue only (they share the
    # published location, athena_lake_clear_audit); the published files are untouched.
    for mart in MARTS_BY_RAW_FILE:
        glue.delete_table(DatabaseName=AUDIT, Name=mart)
    assert published_rows(lake) == before
    assert (
        pin_build(f"{lake}/trip_features", catalog=catalog, marts=MARTS_BY_RAW_FILE).invocation_id
        == published
    )


def test_only_the_published_build_is_recorded(catalog, glue, lake, raw, published, tmp_path):
    upload(raw, "taxi_2016_03.txt", month_lines("taxi_2016_03.txt", 3))
    plan = plan_athena_build(catalog, lake, raw, rules(), full_refresh=False)
    manifest = {"metadata": {"invocation_id": published}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    (tmp_path / "run_results.json").write_text(
        json.dumps({"metadata": {"invocation_id": str(uuid.uuid4())}, "results": []})
    )
    assert (
        record_published(catalog, lake, plan, tmp_path, MARTS_BY_RAW_FILE) is None
    )  # not the published build

    (tmp_path / "run_results.json").write_text(
        json.dumps({"metadata": {"invocation_id": published}, "results": []})
    )
    assert record_published(catalog, lake, plan, tmp_path, MARTS_BY_RAW_FILE)
    recorded = read_increment(lake, published)
    assert recorded["mode"] == INCREMENTAL and recorded["reread"] == ["taxi_2016_03.txt"]
    assert {f["name"]: f["etag"] for f in recorded["files"]} == {
        f.name: f.etag for f in list_s3_raw_files(raw)
    }
    assert read_artifact(lake, published, "manifest.json") == manifest
    assert read_artifact(lake, published, RAW_FILES) == recorded


def test_the_rules_checksum_reads_the_folders_dbt_reads():
    project = yaml.safe_load((REPO_ROOT / "dbt_project" / "dbt_project.yml").read_text())
    folders = project["model-paths"] + project["macro-paths"] + project["test-paths"]
    assert sorted(folders) == sorted(RULE_FOLDERS)


def test_athena_build_dry_run_prints_the_plan_and_the_scan(lake, raw, published, glue, aws_env):
    """The command as users run it, up to dbt build: the project's rules read offline (dummy
    Athena settings), the plan from S3 and Glue, what Athena scans, and the vars."""
    athena_settings = {k: v for k, v in OFFLINE_ENV.items() if k.startswith("DBT_ATHENA")}
    env = {**os.environ, **aws_env, **athena_settings}
    dbt_vars = {"raw_path": raw, "lake_path": lake}
    real = project_rules(REPO_ROOT / "dbt_project", dbt_vars, env)
    record(lake, published, raw, logic=real.logic)
    upload(raw, "taxi_2016_03.txt", month_lines("taxi_2016_03.txt", 7))
    command = [sys.executable, "-m", "lakehouse", "--lake", lake, "athena-build"]
    command += ["--raw", raw, "--dry-run"]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"lake: incremental build on {published}: raw files 1 new, 0 changed" in done.stdout
    assert "MiB of raw text" in done.stdout
    printed = done.stdout.split("lake: --vars '", 1)[1].rsplit("'", 1)[0]
    assert json.loads(printed)["lake_increment"] == {
        "mode": "incremental",
        "files": ["taxi_2016_03.txt"],
        "published_build": published,
    }
