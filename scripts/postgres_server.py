"""A local PostgreSQL for tuning many workers on one study (Optuna RDB storage) and for MLflow.

    python -m scripts.postgres_server start --database optuna --database mlflow
    python -m scripts.postgres_server status
    python -m scripts.postgres_server stop

Runs its own cluster under `--data-dir` (default `data/postgres`), listening on 127.0.0.1 only,
every login checked with a password (scram-sha-256). The password is PGPASSWORD from the
environment; when unset, the development default below is used. It is for this local server
only, which nothing outside this machine can reach. PostgreSQL refuses to run as root, so as
root the cluster belongs to the `postgres` OS user (created by the Debian package) and every
server command runs as that user. Install the server with `bash scripts/install_postgres.sh`.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

DEV_PASSWORD = "dc-taxi-dev"
DEFAULT_USER = "dc_taxi"
DEFAULT_DATA_DIR = Path("data/postgres")
DEFAULT_PORT = 5433  # not 5432: leave the port of a system cluster alone
HOST = "127.0.0.1"
STATE_FILE = "server.json"
SERVER_OS_USER = "postgres"  # who runs the server when we are root
INSTALL_HINT = "install it with `bash scripts/install_postgres.sh`"


class PostgresError(RuntimeError):
    """The local server could not be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class RunningPostgres:
    """What `start` leaves in `<data_dir>/server.json` (no password: that stays in the env)."""

    port: int
    user: str
    data_dir: str

    def url(self, database: str, password: str | None = None) -> str:
        """A SQLAlchemy URL (what Optuna's `--storage` and MLflow take) for one database.

        With `password=""` the URL carries none and the driver reads PGPASSWORD instead. The
        driver is named (psycopg 3): SQLAlchemy 2.0 would otherwise look for psycopg2.
        """
        secret = password if password is not None else password_from_env()
        login = f"{self.user}:{quote(secret, safe='')}" if secret else self.user
        return f"postgresql+psycopg://{login}@{HOST}:{self.port}/{database}"


def password_from_env() -> str:
    return os.environ.get("PGPASSWORD") or DEV_PASSWORD


def find_binary(name: str) -> str:
    """A PostgreSQL server program: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if versions:
        return max(versions, key=lambda path: int(Path(path).parts[-3]))
    raise PostgresError(f"no `{name}` (PostgreSQL server) found — {INSTALL_HINT}")


def server_available() -> bool:
    """True when initdb and pg_ctl can be found (what the tests check before starting one)."""
    try:
        find_binary("initdb")
        find_binary("pg_ctl")
    except PostgresError:
        return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: run its programs as the `postgres` OS user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVER_OS_USER, "--", *command]


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_OS_USER, SERVER_OS_USER)


def _check_reachable(data_dir: Path) -> None:
    """As root, the `postgres` user must be able to enter every parent of the data dir."""
    if os.geteuid() != 0:
        return
    for parent in data_dir.parents:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            raise PostgresError(
                f"the `{SERVER_OS_USER}` OS user cannot enter {parent} (not world-searchable), so"
                f" it cannot run a cluster under {data_dir} — pass a --data-dir elsewhere"
                f" (e.g. under /var/tmp) or `chmod o+x {parent}`"
            )


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(
        _as_server_user(command), capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        details = (done.stderr or done.stdout).strip().splitlines()[-5:]
        if log is not None:
            details += _tail(log)
        raise PostgresError(f"{what} failed: {' | '.join(details)}")


def _tail(log: Path, lines: int = 5) -> list[str]:
    try:
        return log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _cluster(data_dir: Path) -> Path:
    return data_dir / "cluster"


def init_cluster(data_dir: Path, user: str, password: str) -> None:
    """initdb with a password-protected superuser; only TCP on 127.0.0.1; socket in the dir."""
    cluster = _cluster(data_dir)
    _check_reachable(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    _give_to_server_user(data_dir)
    pwfile = data_dir / "pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    _give_to_server_user(pwfile)
    try:
        _run(
            [
                find_binary("initdb"),
                f"--pgdata={cluster}",
                f"--username={user}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    settings = {
        "listen_addresses": f"'{HOST}'",
        "unix_socket_directories": f"'{data_dir.resolve()}'",
        "max_connections": "200",  # workers x (pool + heartbeat) + an MLflow server
        "shared_buffers": "'64MB'",
    }
    with (cluster / "postgresql.conf").open("a") as conf:
        conf.write("\n# dc-taxi: local development server\n")
        conf.writelines(f"{name} = {value}\n" for name, value in settings.items())


def is_running(data_dir: Path) -> bool:
    cluster = _cluster(data_dir.resolve())
    if not (cluster / "PG_VERSION").exists():
        return False
    done = subprocess.run(
        _as_server_user([find_binary("pg_ctl"), "status", "-D", str(cluster)]),
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode == 0


def read_state(data_dir: Path) -> RunningPostgres | None:
    """The server recorded under data_dir, if it is running."""
    data_dir = data_dir.resolve()
    state = data_dir / STATE_FILE
    if not state.exists() or not is_running(data_dir):
        return None
    return RunningPostgres(**json.loads(state.read_text()))


def connect(server: RunningPostgres, database: str = "postgres", password: str | None = None):
    """A psycopg (3) connection over TCP, the driver Optuna and MLflow use too; autocommit."""
    import psycopg

    return psycopg.connect(
        host=HOST,
        port=server.port,
        user=server.user,
        password=password if password is not None else password_from_env(),
        dbname=database,
        connect_timeout=5,
        autocommit=True,  # CREATE DATABASE cannot run in a transaction
    )


def create_database(server: RunningPostgres, database: str) -> None:
    """CREATE DATABASE unless it exists."""
    with connect(server) as connection:
        found = connection.execute("select 1 from pg_database where datname = %s", (database,))
        if found.fetchone() is None:
            connection.execute(f'create database "{database}"')


def _pg_ctl_start(data_dir: Path, port: int, timeout: float) -> None:
    log = data_dir / "postgres.log"
    if os.geteuid() == 0 and not log.exists():
        log.touch()
        _give_to_server_user(log)
    _run(
        [
            find_binary("pg_ctl"),
            "start",
            "-D",
            str(_cluster(data_dir)),
            "-l",
            str(log),
            "-o",
            f"-p {port}",
            "-w",
            "-t",
            str(int(timeout)),
        ],
        "pg_ctl start",
        log,
    )


def start(
    data_dir: Path = DEFAULT_DATA_DIR,
    port: int = DEFAULT_PORT,
    databases: tuple[str, ...] = (),
    user: str = DEFAULT_USER,
    timeout: float = 60.0,
) -> RunningPostgres:
    """Start (initialising on first use) the cluster on 127.0.0.1:port; create `databases`."""
    data_dir = data_dir.resolve()
    running = read_state(data_dir)
    if running:
        raise PostgresError(
            f"already running on {HOST}:{running.port} — `python -m scripts.postgres_server stop`"
            " first"
        )
    if not (_cluster(data_dir) / "PG_VERSION").exists():
        init_cluster(data_dir, user, password_from_env())
    elif (data_dir / STATE_FILE).exists():
        user = json.loads((data_dir / STATE_FILE).read_text())["user"]  # fixed at initdb
    port = port or free_port()
    _pg_ctl_start(data_dir, port, timeout)
    server = RunningPostgres(port=port, user=user, data_dir=str(data_dir))
    (data_dir / STATE_FILE).write_text(json.dumps(asdict(server), indent=2))
    try:
        for database in databases:
            create_database(server, database)
    except Exception:
        stop(data_dir)
        raise
    return server


def stop(data_dir: Path = DEFAULT_DATA_DIR, mode: str = "fast") -> bool:
    """Stop the cluster under data_dir (`fast`: roll back open transactions); False if none."""
    data_dir = data_dir.resolve()
    if not is_running(data_dir):
        return False
    _run(
        [find_binary("pg_ctl"), "stop", "-D", str(_cluster(data_dir)), "-m", mode, "-w"],
        "pg_ctl stop",
    )
    return True


def restart(data_dir: Path = DEFAULT_DATA_DIR, timeout: float = 60.0) -> RunningPostgres:
    """Stop and start again on the same port (clients' connections are cut)."""
    data_dir = data_dir.resolve()
    server = read_state(data_dir)
    if server is None:
        raise PostgresError(f"no server running for {data_dir}")
    stop(data_dir)
    _pg_ctl_start(data_dir, server.port, timeout)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.postgres_server",
        description="Run a local PostgreSQL on 127.0.0.1 for Optuna workers and MLflow.",
    )
    parser.add_argument("command", choices=("start", "stop", "status"), help="what to do")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"cluster, log and state; default {DEFAULT_DATA_DIR}",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (0: any free port); default {DEFAULT_PORT}",
    )
    parser.add_argument(
        "--database",
        action="append",
        default=[],
        help="create this database after starting (repeatable; start only)",
    )
    parser.add_argument(
        "--user", default=DEFAULT_USER, help=f"superuser made by initdb; default {DEFAULT_USER}"
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            server = start(args.data_dir, args.port, tuple(args.database), args.user)
            print(f"PostgreSQL running on {HOST}:{server.port}, data in {server.data_dir}")
            shown = "$PGPASSWORD" if os.environ.get("PGPASSWORD") else DEV_PASSWORD
            for database in args.database or ["postgres"]:
                print(f"  {database}: {server.url(database, shown)}")
        elif args.command == "stop":
            stopped = stop(args.data_dir)
            print("stopped" if stopped else f"no server running for {args.data_dir}")
        else:
            server = read_state(args.data_dir)
            if server is None:
                print(f"not running (data dir {args.data_dir})")
                return 1
            print(f"running on {HOST}:{server.port}, data in {server.data_dir}")
    except PostgresError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
