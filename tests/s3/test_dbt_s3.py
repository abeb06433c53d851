"""`dbt build --target s3`: raw files read from a real S3 server, every mart an Iceberg table on it.

The data and metadata files are on S3, the catalog a SQLite file of the test's own. The S3
lake's published build must hold exactly what a local build of the same raw files holds, a
rebuild must publish a new build (and leave the old one pinnable), objects no build published
are never read, and bad credentials must fail with one clear line and publish nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lakehouse.build_artifacts import BUILDS_FOLDER, MANIFEST, RUN_RESULTS
from lakehouse.builds import PinnedBuild, pin_build
from lakehouse.catalog import MARTS
from scripts.upload_raw import upload_folder
from tests.conftest import REPO_ROOT, DbtProject, generate_raw
from tests.pipeline.outputs import current_build, read_mart, read_table
from tests.s3.conftest import ADMIN, BUCKET, READER, Identity

pytestmark = pytest.mark.slow

# model_performance is empty until `training.predict` has scored the lake.
FILLED_MARTS = tuple(mart for mart in MARTS if mart != "model_performance")
SPLITS = ("train", "validation", "test")


@dataclass
class S3DbtProject(DbtProject):
    """A DbtProject whose lake is an s3:// prefix on the local server; its catalog is a SQLite
    file of its own (`catalog`, default `<root>/catalog.db`), never the repo's data/catalog.db."""

    lake_uri: str = ""
    s3_env: dict[str, str] = field(default_factory=dict)
    catalog: Path | None = None

    @property
    def lake(self) -> str:
        return self.lake_uri

    def lake_env(self) -> dict[str, str]:
        """What a reader of this lake needs: the S3 settings and the catalog."""
        catalog = self.catalog or self.root / "catalog.db"
        return {**self.s3_env, "LAKE_CATALOG_URI": f"sqlite:///{catalog}"}

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.lake_env()}


@contextmanager
def reading(project: S3DbtProject) -> Iterator[None]:
    """This process reads `project`'s lake (S3 endpoint, keys and catalog from the env)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in project.lake_env().items():
            patch.setenv(name, value)
        yield


def s3_build_of(project: S3DbtProject) -> PinnedBuild:
    """The S3 lake's current build, for its ids (reading its files needs `reading` again)."""
    with reading(project):
        return current_build(project.lake_uri)


@pytest.fixture(scope="module")
def s3_build(tmp_path_factory, local_s3):
    """Generated raw files uploaded to S3, built into an S3 lake, and the same built locally."""
    root = tmp_path_factory.mktemp("s3_build")
    reference = DbtProject(root / "local", "local")
    reference.raw.mkdir(parents=True)
    generate_raw(reference.raw, rows=20_000, months="2015-01:2015-03")
    reference.build()

    prefix = local_s3.fresh_prefix("build")
    raw_uri = f"s3://{BUCKET}/{prefix}/raw"
    upload_folder(reference.raw, raw_uri, client=local_s3.client())
    project = S3DbtProject(
        root / "s3", "s3", lake_uri=f"s3://{BUCKET}/{prefix}/lake", s3_env=local_s3.env()
    )
    project.root.mkdir()
    result = project.dbt("build", raw=raw_uri)
    assert result.returncode == 0, result.output[-4000:]
    return project, raw_uri, reference, result


def _lake_key(project: S3DbtProject) -> str:
    return project.lake_uri.removeprefix(f"s3://{BUCKET}/")


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: tuple(str(value) for value in sorted(row.items())))


def _close(value):
    return pytest.approx(value, rel=1e-12) if isinstance(value, float) else value


def test_build_runs_every_test_without_error(s3_build):
    *_, result = s3_build
    assert "ERROR=0" in result.output
    assert "SKIP=0" in result.output


def test_every_mart_is_an_iceberg_table_on_s3(local_s3, s3_build):
    project, *_ = s3_build
    objects = local_s3.objects(_lake_key(project))
    with reading(project):  # pyiceberg opens S3 with the keys in the env when it first reads
        build = current_build(project.lake_uri)
        assert build.lake_root == project.lake_uri
        assert build.catalog == f"sqlite:///{project.root / 'catalog.db'}"
        assert set(build.snapshots) == set(MARTS)
        for mart in FILLED_MARTS:
            files = build.data_files(mart)
            assert files, mart
            folder = f"{project.lake_uri}/{mart}/data/{build.invocation_id}/"
            assert all(f.uri.startswith(folder) for f in files), (mart, files[:2])
            assert all(f.uri.removeprefix(f"s3://{BUCKET}/") in objects for f in files)
            metadata = [key for key in objects if key.startswith(f"{_lake_key(project)}/{mart}/")]
            assert any("/metadata/" in key and key.endswith(".metadata.json") for key in metadata)
        # `split` is a column inside trip_features' files; every split has its own files.
        for split in SPLITS:
            assert build.data_files("trip_features", split=split), split
        table = read_table(build, "trip_features")
    assert set(table.column("split").to_pylist()) == set(SPLITS)
    # Nothing beside the marts: no temporary or stray objects at the lake's top level (folder
    # markers, keys ending in "/", are not objects of a mart).
    top = {
        key.removeprefix(f"{_lake_key(project)}/").split("/")[0]
        for key in objects
        if not key.endswith("/")
    }
    assert top == {*MARTS, BUILDS_FOLDER}
    # Beside them, the build's dbt artifacts (lakehouse/build_artifacts.py).
    artifacts = f"{_lake_key(project)}/{BUILDS_FOLDER}/{build.invocation_id}"
    assert {f"{artifacts}/{RUN_RESULTS}", f"{artifacts}/{MANIFEST}"} <= set(objects)


@pytest.mark.parametrize("mart", FILLED_MARTS)
def test_s3_marts_equal_the_local_build(s3_build, mart):
    project, _, reference, _ = s3_build
    with reading(project):
        s3_rows = _sorted(read_mart(project.lake_uri, mart))
    local_rows = _sorted(read_mart(reference.lake, mart))
    assert s3_rows
    if mart == "feature_stats":
        # Parallel sums add in a different order from run to run: equal up to rounding.
        local_rows = [{k: _close(v) for k, v in row.items()} for row in local_rows]
    assert s3_rows == local_rows


def test_a_rebuild_publishes_a_new_build_and_never_reads_stray_objects(local_s3, s3_build):
    project, raw_uri, reference, _ = s3_build
    before = s3_build_of(project)
    with reading(project):
        first_file = before.data_files("trip_features")[0].uri
        published = {f.uri for mart in MARTS for f in before.data_files(mart)}
    # An object no build published (a killed build's leftover, say), where a glob would find it.
    stray = f"{_lake_key(project)}/trip_features/data/killed-build/split=train/mart_0.parquet"
    local_s3.client().copy_object(
        Bucket=BUCKET,
        Key=stray,
        CopySource={"Bucket": BUCKET, "Key": first_file.removeprefix(f"s3://{BUCKET}/")},
    )
    result = project.dbt("build", raw=raw_uri)
    assert result.returncode == 0, result.output[-4000:]

    with reading(project):
        after = current_build(project.lake_uri)
        assert after.invocation_id != before.invocation_id
        assert after.snapshot_id != before.snapshot_id
        assert after.published_at >= before.published_at
        uris = [f.uri for mart in MARTS for f in after.data_files(mart)]
        # Nothing new in the raw files: an incremental build keeps the published files of the
        # marts kept per raw file and writes the others again; never the stray one.
        assert all(f"/data/{after.invocation_id}/" in uri or uri in published for uri in uris)
        assert any(f"/data/{after.invocation_id}/" in uri for uri in uris)
        assert not any("killed-build" in uri for uri in uris)
        rows = read_table(after, "trip_features").num_rows
        # The earlier build stays readable by its snapshot id (time travel on S3).
        older = pin_build(f"{project.lake_uri}/trip_features", snapshot_id=before.snapshot_id)
        assert older.invocation_id == before.invocation_id
        assert read_table(older, "trip_features").num_rows == rows
    assert rows == len(read_mart(reference.lake, "trip_features"))


@pytest.mark.parametrize(
    "identity",
    [Identity("admin", ADMIN.access_key, "not-the-secret"), READER],
    ids=["wrong-secret", "read-only-key"],
)
def test_bad_credentials_fail_clearly_and_publish_nothing(local_s3, s3_build, identity, tmp_path):
    project, raw_uri, *_ = s3_build
    published = s3_build_of(project)
    existing = local_s3.objects(_lake_key(project))
    fresh_lake = f"s3://{BUCKET}/{local_s3.fresh_prefix('denied')}/lake"
    for lake_uri, catalog in (
        (project.lake_uri, project.root / "catalog.db"),  # the same lake: its own catalog
        (fresh_lake, tmp_path / "fresh-catalog.db"),
    ):
        denied = S3DbtProject(
            tmp_path / local_s3.fresh_prefix("denied"),
            "s3",
            lake_uri=lake_uri,
            s3_env=local_s3.env(identity),
            catalog=catalog,
        )
        denied.root.mkdir()
        result = denied.dbt("build", raw=raw_uri)
        assert result.returncode != 0
        assert "refused access to s3://" in result.output
        assert "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in result.output
    # The existing lake is untouched and its build still current; the fresh one holds nothing,
    # not even a partial mart.
    assert local_s3.objects(_lake_key(project)) == existing
    assert s3_build_of(project).snapshots == published.snapshots
    assert local_s3.objects(fresh_lake.removeprefix(f"s3://{BUCKET}/")) == {}


def test_training_streams_trip_features_from_s3(s3_build, tmp_path):
    project, *_ = s3_build
    command = [
        sys.executable,
        "-m",
        "training.train",
        "--data",
        f"{project.lake_uri}/trip_features",
        "--max-epochs",
        "1",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--no-progress",
    ]
    env = {**os.environ, **project.lake_env(), "MLFLOW_DISABLE_TELEMETRY": "true"}
    completed = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "best_val_rmse" in json.loads(completed.stdout.strip().splitlines()[-1])
    # The run's lineage names the S3 lake's current build.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    build = s3_build_of(project)
    assert run.data.tags["dbt.invocation_id"] == build.invocation_id
    assert run.data.tags["lake.snapshot_id"] == str(build.snapshot_id)
    assert run.data.tags["lake.uri"] == project.lake_uri
