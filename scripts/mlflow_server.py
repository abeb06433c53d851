"""A shared MLflow tracking server: PostgreSQL for runs, the local S3 server for artifacts.

    python -m scripts.postgres_server start --database optuna --database mlflow
    python -m scripts.s3_server start
    python -m scripts.mlflow_server start            # prints the MLFLOW_TRACKING_URI to export
    python -m scripts.mlflow_server stop

The server listens on 127.0.0.1 only and owns the database schema (it creates and migrates it
when it starts), so any number of training and tuning workers can log to it at once through
`MLFLOW_TRACKING_URI`; they never touch the database or the bucket themselves. Artifacts are
proxied: clients upload to the server, which stores them under `--artifacts-destination`.

By default the backend is the `mlflow` database of the cluster `scripts.postgres_server` runs
under data/postgres, and the artifacts go to the bucket `dc-taxi-mlflow` of the SeaweedFS
server `scripts.s3_server` runs under data/s3. Pass `--backend-store-uri` /
`--artifacts-destination` (with the standard AWS_* variables) to use others. The database
password is passed in PGPASSWORD, never on the command line: PGPASSWORD from the environment,
else (for the default backend) the password `scripts.postgres_server` generated.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from scripts import postgres_server, s3_server
from scripts._server import (
    HOST,
    ServerError,
    clear_state,
    command_line,
    free_port,
    spawn,
    terminate,
    wait_until,
    write_state,
)
from scripts._server import read_state as _read_state_file

DEFAULT_DATA_DIR = Path("data/mlflow-server")
DEFAULT_PORT = 5000
DEFAULT_BUCKET = "dc-taxi-mlflow"


class MlflowServerError(ServerError):
    """The server could not be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class RunningMlflow:
    """What `start` leaves in `<data_dir>/server.json`."""

    pid: int
    port: int
    data_dir: str

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def default_backend(postgres_dir: Path) -> tuple[str, str]:
    """The `mlflow` database of the project's PostgreSQL (URL without password) and the
    password, which goes to the server in PGPASSWORD."""
    server = postgres_server.read_state(postgres_dir)
    if server is None:
        raise MlflowServerError(
            f"no PostgreSQL running for {postgres_dir} — start it with `python -m"
            " scripts.postgres_server start --database mlflow`, or pass --backend-store-uri"
        )
    postgres_server.create_database(server, "mlflow")
    return server.url("mlflow", password=""), server.password()


def default_artifacts(s3_dir: Path) -> tuple[str, dict[str, str]]:
    """s3://dc-taxi-mlflow/artifacts on the project's SeaweedFS, and the env to reach it."""
    server = s3_server.read_state(s3_dir.resolve())
    if server is None:
        raise MlflowServerError(
            f"no S3 server running for {s3_dir} — start it with `python -m scripts.s3_server"
            " start`, or pass --artifacts-destination"
        )
    identity = s3_server.server_identity(Path(server.data_dir))
    s3_server.create_bucket(server.endpoint, identity, DEFAULT_BUCKET)
    return f"s3://{DEFAULT_BUCKET}/artifacts", server.env(identity)


def server_env(artifacts_env: dict[str, str], password: str | None) -> dict[str, str]:
    """The server's environment: S3 endpoint and keys, database password, no telemetry."""
    env = {**os.environ, **artifacts_env, "MLFLOW_DISABLE_TELEMETRY": "true"}
    endpoint = artifacts_env.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        env["MLFLOW_S3_ENDPOINT_URL"] = endpoint  # what MLflow's S3 artifact store reads
    if password:
        env["PGPASSWORD"] = password
    return env


def _command(port: int, backend: str, artifacts: str, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host", HOST,
        "--port", str(port),
        "--workers", str(workers),
        "--backend-store-uri", backend,
        "--artifacts-destination", artifacts,
        "--serve-artifacts",
    ]  # fmt: skip


def _is_ours(pid: int, port: int) -> bool:
    """True when pid is a live `mlflow server` on this port (guards against pid reuse)."""
    cmdline = command_line(pid)
    return b"server" in cmdline and b"mlflow" in cmdline and str(port).encode() in cmdline


def read_state(data_dir: Path) -> RunningMlflow | None:
    state = _read_state_file(data_dir.resolve())
    if state is None:
        return None
    server = RunningMlflow(**state)
    return server if _is_ours(server.pid, server.port) else None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(
    data_dir: Path = DEFAULT_DATA_DIR,
    port: int = DEFAULT_PORT,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    artifacts_env: dict[str, str] | None = None,
    password: str | None = None,
    workers: int = 2,
    timeout: float = 120.0,
) -> RunningMlflow:
    """Start `mlflow server` on 127.0.0.1:port and wait until /health answers."""
    data_dir = data_dir.resolve()
    running = read_state(data_dir)
    if running:
        raise MlflowServerError(
            f"already running at {running.url} (pid {running.pid}) — `python -m"
            " scripts.mlflow_server stop` first"
        )
    if backend_store_uri is None:
        backend_store_uri, default_password = default_backend(postgres_server.DEFAULT_DATA_DIR)
        password = password or default_password
    if artifacts_destination is None:
        artifacts_destination, artifacts_env = default_artifacts(s3_server.DEFAULT_DATA_DIR)
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "mlflow.log"
    process = spawn(
        _command(port, backend_store_uri, artifacts_destination, workers),
        data_dir,
        log,
        server_env(artifacts_env or {}, password),
    )  # its own process group: stop ends the web workers too
    server = RunningMlflow(pid=process.pid, port=port, data_dir=str(data_dir))
    wait_until(lambda: _healthy(server.url), process, log, timeout, "mlflow server", poll=0.5)
    write_state(data_dir, asdict(server))
    return server


def stop(data_dir: Path = DEFAULT_DATA_DIR, timeout: float = 20.0) -> bool:
    """Stop the server recorded under data_dir; False when none was running."""
    data_dir = data_dir.resolve()
    server = read_state(data_dir)
    clear_state(data_dir)
    if server is None:
        return False
    terminate(server.pid, timeout)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.mlflow_server",
        description="Run a shared MLflow tracking server on 127.0.0.1 (PostgreSQL + S3).",
        allow_abbrev=False,
    )
    parser.add_argument("command", choices=("start", "stop", "status"), help="what to do")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"log and state; default {DEFAULT_DATA_DIR}",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1; default {DEFAULT_PORT}"
    )
    parser.add_argument(
        "--backend-store-uri",
        help="runs database (default: the `mlflow` db of scripts.postgres_server)",
    )
    parser.add_argument(
        "--artifacts-destination",
        help=f"artifact root (default: s3://{DEFAULT_BUCKET}/artifacts on scripts.s3_server)",
    )
    parser.add_argument("--workers", type=int, default=2, help="web worker processes")
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            server = start(
                args.data_dir,
                args.port,
                args.backend_store_uri,
                args.artifacts_destination,
                workers=args.workers,
            )
            print(f"MLflow server running at {server.url} (pid {server.pid}); use:")
            print(f"export MLFLOW_TRACKING_URI={server.url}")
        elif args.command == "stop":
            stopped = stop(args.data_dir)
            print("stopped" if stopped else f"no server running for {args.data_dir}")
        else:
            server = read_state(args.data_dir)
            if server is None:
                print(f"not running (data dir {args.data_dir})")
                return 1
            print(f"running at {server.url} (pid {server.pid})")
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
