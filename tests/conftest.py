"""Shared fixtures: run the real generator and real `dbt` against a throwaway DuckDB + lake."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.dbt_subprocess import REPO_ROOT, dbt_env, dbt_executable


def pytest_addoption(parser):
    parser.addoption(
        "--dbt-target",
        default="local",
        help="dbt target the pipeline tests build against (profiles.yml); default: local DuckDB.",
    )
    parser.addoption(
        "--pipeline-rows",
        type=int,
        default=50_000,
        help="raw rows generated for the end-to-end oracle comparison (default 50,000).",
    )


@dataclass
class DbtResult:
    returncode: int
    output: str


@dataclass
class DbtProject:
    """One isolated pipeline workspace: its own raw folder, lake, DuckDB file and dbt target dir."""

    root: Path
    target: str

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    def env(self) -> dict[str, str]:
        return dbt_env(self.root)

    def dbt(
        self, *args: str, raw: Path | str | None = None, extra_vars: dict | None = None
    ) -> DbtResult:
        """Run the real dbt CLI; returns its exit code and combined output."""
        # JSON is YAML, and quotes any path (a `'` or a space in it) correctly.
        dbt_vars = {
            "raw_path": str(raw or self.raw),
            "lake_path": str(self.lake),
            **(extra_vars or {}),
        }
        command = [
            dbt_executable(),
            *args,
            "--target",
            self.target,
            "--vars",
            json.dumps(dbt_vars),
        ]
        completed = subprocess.run(
            command, cwd=REPO_ROOT, env=self.env(), capture_output=True, text=True, timeout=900
        )
        return DbtResult(completed.returncode, completed.stdout + completed.stderr)

    def build(self, **kwargs) -> DbtResult:
        result = self.dbt("build", **kwargs)
        assert result.returncode == 0, result.output[-4000:]
        return result


def generate_raw(out: Path, rows: int, months: str, seed: int = 7) -> None:
    """Run the project's generator CLI into `out`."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.generate_raw",
            "--rows",
            str(rows),
            "--months",
            months,
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=REPO_ROOT,
        check=True,
    )


@pytest.fixture
def dbt_project(tmp_path, request) -> DbtProject:
    project = DbtProject(tmp_path, request.config.getoption("--dbt-target"))
    project.raw.mkdir()
    return project
