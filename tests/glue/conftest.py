"""An emulated AWS Glue Data Catalog (moto's server) and the local S3 server, both on 127.0.0.1.

Together they stand in for Athena's lake: Iceberg tables registered in Glue, their metadata and
Parquet files on S3, read through pyiceberg's GlueCatalog (`LAKE_CATALOG_URI=glue`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from scripts.s3_server import HOST, REGION, free_port
from tests.s3.conftest import ADMIN, LocalS3, local_s3  # noqa: F401 (the S3 server fixture)


def _wait_until_up(endpoint: str, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on {endpoint} within {timeout_s} s")


@pytest.fixture(scope="session")
def glue_endpoint(tmp_path_factory) -> Iterator[str]:
    """moto's server on a free 127.0.0.1 port, serving the Glue API; stopped afterwards."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    executable = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(executable), "-H", HOST, "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "false"},
        )
    endpoint = f"http://{HOST}:{port}"
    try:
        _wait_until_up(endpoint, process)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def aws_env(glue_endpoint, local_s3: LocalS3, monkeypatch) -> dict[str, str]:  # noqa: F811
    """The AWS environment of a reader: Glue at moto, S3 at SeaweedFS, the catalog is Glue."""
    env = {
        **local_s3.env(ADMIN),
        "AWS_ENDPOINT_URL_GLUE": glue_endpoint,
        "AWS_ENDPOINT_URL_S3": local_s3.server.endpoint,
        "LAKE_CATALOG_URI": "glue",
    }
    env.pop("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def glue(aws_env, glue_endpoint):
    """A boto3 Glue client of the emulated catalog, emptied for each test."""
    request = urllib.request.Request(f"{glue_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    return boto3.client("glue", region_name=REGION)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "servers: tests that start local servers (moto's Glue, SeaweedFS S3)"
    )
