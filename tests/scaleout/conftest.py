"""Fixtures for the scale-out tests: lakes, a real PostgreSQL, and CLI processes to kill.

Servers are started here on free 127.0.0.1 ports and stopped at the end. Without the
PostgreSQL server programs, the tests that need them skip, or fail under CI (env `CI` set),
naming the install script.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts import postgres_server
from scripts.synthetic_lake import write_lake
from tests.conftest import REPO_ROOT
from tests.training.conftest import SMALL_LAYOUT

# Big enough that a trial or an epoch lasts a few seconds: time to kill it in the middle.
LONG_LAYOUT = {
    "train": [[20_000, 20_000], [20_000, 20_000], [20_000, 20_000]],
    "validation": [[4_000], [4_000]],
    "test": [[4_000]],
}


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a training CLI process: one torch thread, no telemetry."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **extra,
    }


def start_cli(module: str, argv: list[str], log: Path, **env: str) -> subprocess.Popen:
    """`python -m <module> <argv>` in the repo root, output to `log`."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            cwd=REPO_ROOT,
            env=cli_env(**env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    """Wait for a CLI process; its output (the tail is in the assertion message if it failed)."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    output = log.read_text(errors="replace")
    assert process.returncode == 0, output[-6000:]
    return output


def wait_for(check: Callable[[], object], timeout: float, what: str, poll: float = 0.1):
    """Poll `check` until it returns something truthy; fail naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


@pytest.fixture(scope="session")
def small_lake(tmp_path_factory) -> Path:
    return write_lake(tmp_path_factory.mktemp("small") / "lake", SMALL_LAYOUT)


@pytest.fixture(scope="session")
def long_lake(tmp_path_factory) -> Path:
    return write_lake(tmp_path_factory.mktemp("long") / "lake", LONG_LAYOUT)


def require_postgres() -> None:
    if postgres_server.server_available():
        return
    message = (
        "the PostgreSQL server (initdb, pg_ctl) is not installed — run"
        " `bash scripts/install_postgres.sh`"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def pg_data_dir() -> Path:
    """A fresh folder for a cluster. Under /tmp: as root, the `postgres` OS user runs it and
    must be able to reach the directory (pytest's own tmp dirs are root-only)."""
    return Path(tempfile.mkdtemp(prefix="dc-taxi-pg-"))


@pytest.fixture(scope="session")
def postgres():
    """A throwaway cluster on a free port; its application role's password is in PGPASSWORD
    for the whole session (as a user would export it), so URLs without one work too."""
    require_postgres()
    data_dir = pg_data_dir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", secrets.token_urlsafe(16))
        server = postgres_server.start(data_dir, port=0)
        try:
            yield server
        finally:
            postgres_server.stop(data_dir, mode="immediate")
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def pg_storage(postgres) -> str:
    """An Optuna storage URL on a fresh database of its own."""
    database = f"optuna_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(postgres, database)
    return postgres.url(database)
