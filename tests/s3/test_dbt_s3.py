"""`dbt build --target s3`: raw files read from a real S3 server, every mart written back to it.

The S3 lake must hold exactly what a local build of the same raw files holds, reruns must
leave no stale object, and bad credentials must fail with one clear line and write nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pyarrow.dataset as ds
import pytest

from scripts.upload_raw import upload_folder
from tests.conftest import REPO_ROOT, DbtProject, generate_raw
from tests.pipeline.outputs import read_mart
from tests.s3.conftest import ADMIN, BUCKET, READER, Identity

pytestmark = pytest.mark.slow

MARTS = ("trip_features", "trips_rejected", "feature_stats", "data_quality_summary")
SPLITS = ("train", "validation", "test")


@dataclass
class S3DbtProject(DbtProject):
    """A DbtProject whose lake is an s3:// prefix on the local server."""

    lake_uri: str = ""
    s3_env: dict[str, str] = field(default_factory=dict)

    @property
    def lake(self) -> str:
        return self.lake_uri

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.s3_env}


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


def _read_s3_mart(local_s3, project: S3DbtProject, name: str) -> list[dict]:
    partitioning = "hive" if name == "trip_features" else None
    dataset = ds.dataset(
        f"{BUCKET}/{_lake_key(project)}/{name}",
        format="parquet",
        partitioning=partitioning,
        filesystem=local_s3.filesystem(),
    )
    return dataset.to_table().to_pylist()


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: tuple(str(value) for value in row.values()))


def _close(value):
    return pytest.approx(value, rel=1e-12) if isinstance(value, float) else value


def test_build_runs_every_test_without_error(s3_build):
    *_, result = s3_build
    assert "ERROR=0" in result.output
    assert "SKIP=0" in result.output


def test_every_mart_is_parquet_on_s3_and_trip_features_is_partitioned(local_s3, s3_build):
    project, *_ = s3_build
    lake = _lake_key(project)
    files = [key for key in local_s3.objects(lake) if key.endswith(".parquet")]
    for mart in MARTS:
        assert any(key.startswith(f"{lake}/{mart}/") for key in files), mart
    partitions = {key.split("/")[-2] for key in files if key.startswith(f"{lake}/trip_features/")}
    assert partitions == {f"split={split}" for split in SPLITS}
    # Nothing else: no temporary or stray objects next to the marts.
    assert {key.removeprefix(f"{lake}/").split("/")[0] for key in files} == set(MARTS)


@pytest.mark.parametrize("mart", MARTS)
def test_s3_marts_equal_the_local_build(local_s3, s3_build, mart):
    project, _, reference, _ = s3_build
    s3_rows = _sorted(_read_s3_mart(local_s3, project, mart))
    local_rows = _sorted(read_mart(reference.lake, mart))
    assert s3_rows
    if mart == "feature_stats":
        # Parallel sums add in a different order from run to run: equal up to rounding.
        local_rows = [{k: _close(v) for k, v in row.items()} for row in local_rows]
    assert s3_rows == local_rows


def test_a_rebuild_leaves_no_stale_object(local_s3, s3_build):
    project, raw_uri, *_ = s3_build
    lake = _lake_key(project)
    stale = f"{lake}/trip_features/split=train/stale-from-an-older-build.parquet"
    local_s3.client().put_object(Bucket=BUCKET, Key=stale, Body=b"old")
    result = project.dbt("build", raw=raw_uri)
    assert result.returncode == 0, result.output[-4000:]
    assert stale not in local_s3.objects(lake)


@pytest.mark.parametrize(
    "identity",
    [Identity("admin", ADMIN.access_key, "not-the-secret"), READER],
    ids=["wrong-secret", "read-only-key"],
)
def test_bad_credentials_fail_clearly_and_write_nothing(local_s3, s3_build, identity):
    project, raw_uri, *_ = s3_build
    existing = local_s3.objects(_lake_key(project))
    fresh_lake = f"s3://{BUCKET}/{local_s3.fresh_prefix('denied')}/lake"
    for lake_uri in (project.lake_uri, fresh_lake):
        denied = S3DbtProject(
            project.root.parent / local_s3.fresh_prefix("denied"),
            "s3",
            lake_uri=lake_uri,
            s3_env=local_s3.env(identity),
        )
        denied.root.mkdir()
        result = denied.dbt("build", raw=raw_uri)
        assert result.returncode != 0
        assert "refused access to s3://" in result.output
        assert "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in result.output
    # The existing lake is untouched; the fresh one holds nothing, not even a partial mart.
    assert local_s3.objects(_lake_key(project)) == existing
    assert local_s3.objects(fresh_lake.removeprefix(f"s3://{BUCKET}/")) == {}


@pytest.mark.skipif(
    importlib.util.find_spec("training.train") is None,
    reason="training.train (the training helper's module) is not in this checkout yet",
)
def test_training_streams_trip_features_from_s3(local_s3, s3_build, tmp_path):
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
    env = {**os.environ, **local_s3.env(), "MLFLOW_DISABLE_TELEMETRY": "true"}
    completed = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
