"""The local S3 server: loopback only, signed requests only, start/status/stop from the CLI."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import psutil
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from scripts import s3_server
from tests.conftest import REPO_ROOT
from tests.s3.conftest import ADMIN, BUCKET, READER, Identity

SENTINEL_SECRET = "caller-real-aws-secret-SENTINEL-5d1f"


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


def _unsigned(method: str, url: str, body: bytes | None) -> int | str:
    """The HTTP status of a plain request without any signature or token, or why none came."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ssl.SSLError) as error:  # gRPC ports: TLS only, no HTTP/1 answer
        return type(error).__name__


def test_no_port_of_the_server_takes_an_unsigned_read_or_write(local_s3):
    """The filer HTTP port once served and overwrote objects without a key (issue 11)."""
    key = "doors/probe.txt"
    local_s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"original")
    paths = [
        f"/buckets/{BUCKET}/{key}",  # the filer's path of the object
        f"/{BUCKET}/{key}",  # the S3 path
        "/dir/assign",  # the master hands out write tokens here
        "/dir/lookup?volumeId=1",
        "/1,0123456789",  # a volume file id
        "/",
    ]
    ports = local_s3.server.ports
    assert set(ports) == {
        "s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"
    }  # fmt: skip
    accepted = []
    for name, port in ports.items():
        for path in paths:
            for method, body in (("GET", None), ("PUT", b"tampered"), ("POST", b"tampered")):
                if name == "master" and path == "/":
                    # The master's status page: the same read-only HTML for every method
                    # (volume counts, no object, no key); nothing is written there.
                    continue
                status = _unsigned(method, f"http://127.0.0.1:{port}{path}", body)
                if isinstance(status, int) and status < 400:
                    accepted.append(f"{method} {name}:{port}{path} -> {status}")
    assert accepted == []
    signed = local_s3.client()
    assert signed.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"original"
    signed.put_object(Bucket=BUCKET, Key=key, Body=b"changed")
    assert signed.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"changed"


def _http2_over_tls(port: int, tls: Path, with_certificate: bool) -> bytes:
    """Open TLS (trusting the server's CA) and send the HTTP/2 preface gRPC starts with."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(tls / "ca.crt")
    context.check_hostname = False  # SeaweedFS does not check host names either
    context.set_alpn_protocols(["h2"])
    if with_certificate:
        context.load_cert_chain(tls / "weed.crt", tls / "weed.key")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as connection,
    ):
        connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        return connection.recv(1024)


def test_grpc_ports_want_a_certificate_of_the_servers_own_ca(local_s3):
    """gRPC (filer, master, volume, S3) would let a client rewrite metadata: mutual TLS."""
    data_dir = Path(local_s3.server.data_dir)
    for secret in (data_dir / "tls" / "weed.key", data_dir / s3_server.SECURITY_FILE):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    for name in ("master_grpc", "volume_grpc", "filer_grpc", "s3_grpc"):
        port = local_s3.server.ports[name]
        try:
            answer = _http2_over_tls(port, data_dir / "tls", with_certificate=False)
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b"", f"{name} answered a client without a certificate"
        assert _http2_over_tls(port, data_dir / "tls", with_certificate=True)  # SETTINGS


def _cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.s3_server", *args, "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _files_holding(folder: Path, secret: str) -> list[str]:
    return [
        str(path)
        for path in folder.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


def test_cli_start_status_stop(tmp_path):
    """By default the server makes its own key; the caller's AWS secret goes nowhere."""
    caller = {"AWS_ACCESS_KEY_ID": "caller-key", "AWS_SECRET_ACCESS_KEY": SENTINEL_SECRET}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return _cli(tmp_path, *args, **caller)

    started = cli("start", "--port", "0", "--bucket", "cli-bucket")
    try:
        assert started.returncode == 0, started.stderr
        assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in started.stdout
        exported = dict(
            line.removeprefix("export ").split("=", 1)
            for line in started.stdout.splitlines()
            if line.startswith("export ")
        )
        local_key = stat.S_IMODE((tmp_path / s3_server.LOCAL_KEY_FILE).stat().st_mode)
        assert local_key == 0o600
        assert _files_holding(tmp_path, SENTINEL_SECRET) == []
        assert exported["AWS_SECRET_ACCESS_KEY"] != SENTINEL_SECRET
        status = cli("status")
        assert status.returncode == 0
        assert exported["AWS_SECRET_ACCESS_KEY"] in status.stdout  # status says it again
        again = cli("start", "--port", "0")
        assert again.returncode == 1
        assert "already running" in again.stderr
        server = s3_server.read_state(tmp_path)
        printed = Identity(
            "admin", exported["AWS_ACCESS_KEY_ID"], exported["AWS_SECRET_ACCESS_KEY"]
        )
        buckets = s3_server.s3_client(server.endpoint, printed)
        assert "cli-bucket" in [b["Name"] for b in buckets.list_buckets()["Buckets"]]
    finally:
        stopped = cli("stop", "--timeout", "2")
    assert stopped.returncode == 0
    assert "stopped" in stopped.stdout
    status = cli("status")
    assert status.returncode == 1
    assert "not running" in status.stdout


def test_use_env_keys_serves_the_callers_key_when_asked(tmp_path):
    caller = {"AWS_ACCESS_KEY_ID": "caller-key", "AWS_SECRET_ACCESS_KEY": SENTINEL_SECRET}
    started = _cli(tmp_path, "start", "--port", "0", "--use-env-keys", **caller)
    try:
        assert started.returncode == 0, started.stderr
        assert SENTINEL_SECRET not in started.stdout  # the caller has it already
        assert _files_holding(tmp_path, SENTINEL_SECRET) == [str(tmp_path / "identities.json")]
        server = s3_server.read_state(tmp_path)
        client = s3_server.s3_client(
            server.endpoint, Identity("admin", "caller-key", SENTINEL_SECRET)
        )
        assert client.list_buckets()["Buckets"] == []
    finally:
        assert _cli(tmp_path, "stop", "--timeout", "2").returncode == 0
    missing = _cli(tmp_path, "start", "--port", "0", "--use-env-keys", AWS_SECRET_ACCESS_KEY="")
    assert missing.returncode == 1
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in missing.stderr
