"""Concurrent staging on a lake on a real S3 server, where each commit writes its metadata to
S3 first: the window in which another build's commit gets in is wide."""

from __future__ import annotations

import pytest

from lakehouse.catalog import CATALOG_ENV
from tests.lakehouse.test_concurrent_staging import stage_at_once
from tests.s3.conftest import BUCKET

pytestmark = pytest.mark.slow


def test_builds_staging_one_s3_mart_at_once_all_succeed(local_s3, tmp_path, monkeypatch):
    for name, value in {**local_s3.env(), CATALOG_ENV: f"sqlite:///{tmp_path}/catalog.db"}.items():
        monkeypatch.setenv(name, value)  # the spawned builds inherit them
    stage_at_once(f"s3://{BUCKET}/{local_s3.fresh_prefix('staging')}/lake", tmp_path)
