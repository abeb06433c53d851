"""What the three local servers (`s3_server`, `postgres_server`, `mlflow_server`) share.

Each runs one server program on 127.0.0.1 with its log, secrets and a `server.json` state file
under its own data folder; these helpers start, wait for, find and stop such a process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"
STATE_FILE = "server.json"


class ServerError(RuntimeError):
    """A local server could not be started, found or stopped; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def write_private(path: Path, text: str) -> None:
    """Write a file only this OS user can read (0600, also when it existed before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_state(data_dir: Path) -> dict | None:
    """The `server.json` that `write_state` left in data_dir, if any."""
    state = data_dir / STATE_FILE
    return json.loads(state.read_text()) if state.exists() else None


def write_state(data_dir: Path, state: dict) -> None:
    (data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))


def clear_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def command_line(pid: int) -> list[bytes]:
    """The argv of a live process ([] when there is none: guards against a reused pid)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def tail(log: Path, lines: int = 5) -> list[str]:
    """The last lines of a log, for error messages."""
    try:
        return log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def spawn(command: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None):
    """Start a server in its own session (so `terminate` reaches its children), output to log."""
    with log.open("ab") as log_handle:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen,
    log: Path,
    timeout: float,
    what: str,
    poll: float = 0.3,
) -> None:
    """Poll `ready` until it is true; stop the process and raise if it exits or times out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            problem = f"{what} exited with code {process.returncode}"
        elif time.monotonic() > deadline:
            problem = f"{what} not ready after {timeout:.0f}s"
        else:
            time.sleep(poll)
            continue
        terminate(process.pid, timeout=10)
        raise ServerError(f"{problem}: {' | '.join(tail(log)) or '(no log)'}")


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM the server's process group, SIGKILL it if it has not exited within timeout."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:  # started by another command: poll /proc
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
