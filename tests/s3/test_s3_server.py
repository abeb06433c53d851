"""The local S3 server: loopback only, signed requests only, start/status/stop from the CLI."""

from __future__ import annotations

import subprocess
import sys

import boto3
import psutil
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from scripts import s3_server
from tests.conftest import REPO_ROOT
from tests.s3.conftest import ADMIN, BUCKET, READER, Identity


def test_every_port_listens_on_loopback_only(local_s3):
    listening = [
        conn.laddr
        for conn in psutil.Process(local_s3.server.pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert len(listening) >= 4  # master, volume, filer, s3 (and their gRPC ports)
    assert {address.ip for address in listening} == {"127.0.0.1"}


def test_anonymous_requests_are_refused(local_s3):
    anonymous = boto3.client(
        "s3",
        endpoint_url=local_s3.server.endpoint,
        region_name=s3_server.REGION,
        config=Config(signature_version=UNSIGNED),
    )
    local_s3.client().put_object(Bucket=BUCKET, Key="anon/probe.txt", Body=b"x")
    for request in (
        lambda: anonymous.list_objects_v2(Bucket=BUCKET),
        lambda: anonymous.get_object(Bucket=BUCKET, Key="anon/probe.txt"),
        lambda: anonymous.put_object(Bucket=BUCKET, Key="anon/new.txt", Body=b"x"),
    ):
        with pytest.raises(ClientError) as refused:
            request()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_a_wrong_secret_is_refused(local_s3):
    wrong = Identity("admin", ADMIN.access_key, "not-the-secret")
    with pytest.raises(ClientError) as refused:
        local_s3.client(wrong).list_objects_v2(Bucket=BUCKET)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_the_reader_key_reads_but_cannot_write(local_s3):
    local_s3.client().put_object(Bucket=BUCKET, Key="reader/probe.txt", Body=b"x")
    reader = local_s3.client(READER)
    assert reader.get_object(Bucket=BUCKET, Key="reader/probe.txt")["Body"].read() == b"x"
    with pytest.raises(ClientError) as refused:
        reader.put_object(Bucket=BUCKET, Key="reader/new.txt", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_cli_start_status_stop(tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scripts.s3_server", *args, "--data-dir", str(tmp_path)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    started = cli("start", "--port", "0", "--bucket", "cli-bucket")
    try:
        assert started.returncode == 0, started.stderr
        assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in started.stdout
        assert cli("status").returncode == 0
        again = cli("start", "--port", "0")
        assert again.returncode == 1
        assert "already running" in again.stderr
        server = s3_server.read_state(tmp_path)
        buckets = s3_server.s3_client(server.endpoint, s3_server.identity_from_env())
        assert "cli-bucket" in [b["Name"] for b in buckets.list_buckets()["Buckets"]]
    finally:
        stopped = cli("stop", "--timeout", "2")
    assert stopped.returncode == 0
    assert "stopped" in stopped.stdout
    status = cli("status")
    assert status.returncode == 1
    assert "not running" in status.stdout
