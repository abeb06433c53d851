"""A local PostgreSQL for tuning many workers on one study (Optuna RDB storage) and for MLflow.

    python -m scripts.postgres_server start --database optuna --database mlflow
    python -m scripts.postgres_server status
    python -m scripts.postgres_server stop

Runs its own cluster under `--data-dir` (default `data/postgres`), listening on 127.0.0.1 only,
every login checked with a password (scram-sha-256). Two roles:

- the application role (`--user`, default `dc_taxi`): what Optuna and MLflow log in as; it
  owns the databases `--database` creates but is not a superuser (so it cannot, for example,
  run programs with `COPY ... TO PROGRAM`). Its password is PGPASSWORD when set; otherwise one
  made at random on first start, kept in `<data-dir>/password` (readable by this OS user
  only) and printed that once. Printed URLs carry no password: the driver reads PGPASSWORD.
- `postgres`, the superuser made by initdb, used only by this script (to create roles and
  databases); its random password is in `<data-dir>/admin-password`.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` OS user
(created by the Debian package) and every server command runs as that user. Install the
server with `bash scripts/install_postgres.sh`.
"""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from scripts._server import HOST, ServerError, free_port, tail, write_private, write_state
from scripts._server import read_state as _read_state_file

__all__ = ["HOST", "free_port"]  # re-exported: tests import them from here

DEFAULT_USER = "dc_taxi"
ADMIN_USER = "postgres"
DEFAULT_DATA_DIR = Path("data/postgres")
DEFAULT_PORT = 5433  # not 5432: leave the port of a system cluster alone
PASSWORD_FILE = "password"
ADMIN_PASSWORD_FILE = "admin-password"
SERVER_OS_USER = "postgres"  # who runs the server when we are root
INSTALL_HINT = "install it with `bash scripts/install_postgres.sh`"


class PostgresError(ServerError):
    """The local server could not be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class RunningPostgres:
    """What `start` leaves in `<data_dir>/server.json` (no password: see `password`)."""

    port: int
    user: str
    data_dir: str

    def password(self) -> str:
        """The application role's password: PGPASSWORD, else the one generated on first start."""
        return os.environ.get("PGPASSWORD") or _read_secret(Path(self.data_dir) / PASSWORD_FILE)

    def url(self, database: str, password: str | None = None) -> str:
        """A SQLAlchemy URL (what Optuna's `--storage` and MLflow take) for one database.

        With `password=""` the URL carries none and the driver reads PGPASSWORD instead. The
        driver is named (psycopg 3): SQLAlchemy 2.0 would otherwise look for psycopg2.
        """
        secret = password if password is not None else self.password()
        login = f"{self.user}:{quote(secret, safe='')}" if secret else self.user
        return f"postgresql+psycopg://{login}@{HOST}:{self.port}/{database}"


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        raise PostgresError(
            f"no {path} — set PGPASSWORD, or start the server once to generate it"
        ) from None


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
            details += tail(log)
        raise PostgresError(f"{what} failed: {' | '.join(details)}")


def _cluster(data_dir: Path) -> Path:
    return data_dir / "cluster"


def init_cluster(data_dir: Path) -> None:
    """initdb with a superuser with a random password; only TCP on 127.0.0.1; socket in the dir."""
    cluster = _cluster(data_dir)
    _check_reachable(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    _give_to_server_user(data_dir)
    admin_password = data_dir / ADMIN_PASSWORD_FILE
    write_private(admin_password, secrets.token_urlsafe(24) + "\n")
    pwfile = data_dir / "pwfile"  # a copy initdb (the server OS user) can read
    shutil.copyfile(admin_password, pwfile)
    _give_to_server_user(pwfile)
    try:
        _run(
            [
                find_binary("initdb"),
                f"--pgdata={cluster}",
                f"--username={ADMIN_USER}",
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
    state = _read_state_file(data_dir)
    if state is None or not is_running(data_dir):
        return None
    return RunningPostgres(**state)


def connect(server: RunningPostgres, database: str = "postgres", password: str | None = None):
    """A psycopg (3) connection of the application role over TCP, the driver Optuna and MLflow
    use too; autocommit."""
    return _connect(server.port, server.user, password or server.password(), database)


def _connect_admin(server: RunningPostgres, database: str = "postgres"):
    password = _read_secret(Path(server.data_dir) / ADMIN_PASSWORD_FILE)
    return _connect(server.port, ADMIN_USER, password, database)


def _connect(port: int, user: str, password: str, database: str):
    import psycopg

    return psycopg.connect(
        host=HOST,
        port=port,
        user=user,
        password=password,
        dbname=database,
        connect_timeout=5,
        autocommit=True,  # CREATE DATABASE cannot run in a transaction
    )


def _ensure_app_role(server: RunningPostgres, password: str) -> None:
    """The application role exists, is no superuser and logs in with `password`."""
    from psycopg import sql

    with _connect_admin(server) as connection:
        found = connection.execute("select 1 from pg_roles where rolname = %s", (server.user,))
        verb = "alter" if found.fetchone() else "create"
        connection.execute(
            sql.SQL(
                "{} role {} login nosuperuser nocreatedb nocreaterole noreplication password {}"
            ).format(sql.SQL(verb), sql.Identifier(server.user), sql.Literal(password))
        )


def create_database(server: RunningPostgres, database: str) -> None:
    """CREATE DATABASE owned by the application role, unless it exists."""
    from psycopg import sql

    with _connect_admin(server) as connection:
        found = connection.execute("select 1 from pg_database where datname = %s", (database,))
        if found.fetchone() is None:
            connection.execute(
                sql.SQL("create database {} owner {}").format(
                    sql.Identifier(database), sql.Identifier(server.user)
                )
            )


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


def _app_password(data_dir: Path) -> str:
    """PGPASSWORD, else the stored generated password, else a new one (stored 0600)."""
    if os.environ.get("PGPASSWORD"):
        return os.environ["PGPASSWORD"]
    path = data_dir / PASSWORD_FILE
    if path.exists():
        return _read_secret(path)
    password = secrets.token_urlsafe(24)
    write_private(path, password + "\n")
    return password


def start(
    data_dir: Path = DEFAULT_DATA_DIR,
    port: int = DEFAULT_PORT,
    databases: tuple[str, ...] = (),
    user: str = DEFAULT_USER,
    timeout: float = 60.0,
) -> RunningPostgres:
    """Start (initialising on first use) the cluster on 127.0.0.1:port; create `databases`.

    The application role `user` gets the password PGPASSWORD, or else the one generated on
    first start into `<data_dir>/password`.
    """
    data_dir = data_dir.resolve()
    running = read_state(data_dir)
    if running:
        raise PostgresError(
            f"already running on {HOST}:{running.port} — `python -m scripts.postgres_server stop`"
            " first"
        )
    if user == ADMIN_USER:
        raise PostgresError(f"--user {ADMIN_USER} is the superuser; pick another name")
    if not (_cluster(data_dir) / "PG_VERSION").exists():
        init_cluster(data_dir)
    elif not (data_dir / ADMIN_PASSWORD_FILE).exists():
        raise PostgresError(
            f"{data_dir} holds a cluster from before the separate superuser (its user is a"
            " superuser with a published password) — remove that folder to start afresh"
            " (or pass another --data-dir)"
        )
    elif (state := _read_state_file(data_dir)) is not None:
        user = state["user"]  # fixed on first start
    password = _app_password(data_dir)
    port = port or free_port()
    _pg_ctl_start(data_dir, port, timeout)
    server = RunningPostgres(port=port, user=user, data_dir=str(data_dir))
    write_state(data_dir, asdict(server))
    try:
        _ensure_app_role(server, password)
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


def _print_started(server: RunningPostgres, databases: list[str], new_password: bool) -> None:
    print(f"PostgreSQL running on {HOST}:{server.port}, data in {server.data_dir}")
    for database in databases or ["postgres"]:
        print(f"  {database}: {server.url(database, password='')}")
    password_file = Path(server.data_dir) / PASSWORD_FILE
    if os.environ.get("PGPASSWORD"):
        print(f"The password of `{server.user}` is the one in PGPASSWORD.")
    elif new_password:
        print(f"Generated the password of `{server.user}` (kept in {password_file}); use:")
        print(f"export PGPASSWORD={server.password()}")
    else:
        print(f"The password of `{server.user}` is in PGPASSWORD; use:")
        print(f'export PGPASSWORD="$(cat {password_file})"')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.postgres_server",
        description="Run a local PostgreSQL on 127.0.0.1 for Optuna workers and MLflow.",
        allow_abbrev=False,
    )
    parser.add_argument("command", choices=("start", "stop", "status"), help="what to do")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"cluster, passwords, log and state; default {DEFAULT_DATA_DIR}",
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
        help="create this database, owned by --user, after starting (repeatable; start only)",
    )
    parser.add_argument(
        "--user",
        default=DEFAULT_USER,
        help=f"the application role (not a superuser), fixed on first start; default"
        f" {DEFAULT_USER}",
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            new_password = (
                not os.environ.get("PGPASSWORD")
                and not (args.data_dir.resolve() / PASSWORD_FILE).exists()
            )
            server = start(args.data_dir, args.port, tuple(args.database), args.user)
            _print_started(server, args.database, new_password)
        elif args.command == "stop":
            stopped = stop(args.data_dir)
            print("stopped" if stopped else f"no server running for {args.data_dir}")
        else:
            server = read_state(args.data_dir)
            if server is None:
                print(f"not running (data dir {args.data_dir})")
                return 1
            print(f"running on {HOST}:{server.port}, data in {server.data_dir}")
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
