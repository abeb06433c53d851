"""dbt as a subprocess that keeps its state in a work folder: its own target, logs and DuckDB
file, never the repository's `dbt_project/target`. What the tests and benchmarks run dbt with."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def dbt_executable() -> str:
    """The `dbt` beside this Python (its virtual environment), else the one on PATH."""
    candidate = Path(sys.executable).with_name("dbt")
    found = str(candidate) if candidate.exists() else shutil.which("dbt")
    if not found:
        sys.exit("dbt not found — install the project first (`pip install -e .`)")
    return found


def dbt_env(
    work: Path,
    *,
    root: Path = REPO_ROOT,
    target_path: Path | None = None,
    log_path: Path | None = None,
    base: Mapping[str, str] | None = None,
    **settings: str,
) -> dict[str, str]:
    """`base` (default: this process's environment) with dbt pointed at the project under
    `root` and its state under `work` (`dbt_target/`, `dbt_logs/`, `warehouse.duckdb`, unless
    given), no usage statistics, and `settings` (more variables) on top."""
    env = dict(os.environ if base is None else base)
    env.update(
        DBT_PROJECT_DIR=str(root / "dbt_project"),
        DBT_PROFILES_DIR=str(root),
        DBT_TARGET_PATH=str(target_path or work / "dbt_target"),
        DBT_LOG_PATH=str(log_path or work / "dbt_logs"),
        DUCKDB_PATH=str(work / "warehouse.duckdb"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        **settings,
    )
    return env
