"""Fixtures for the report tests: real marts from a real `dbt build`, a real tiny Optuna study,
and one headless Chromium shared by every browser test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, DbtProject, generate_raw
from tests.reports.browser import Browser, headless_chromium

STUDY_NAME = "report-study"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with headless_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def built_lake(tmp_path_factory, request) -> DbtProject:
    """Marts built by the real `dbt build` from 20,000 generated raw rows over four months."""
    project = DbtProject(
        tmp_path_factory.mktemp("reports-lake"), request.config.getoption("--dbt-target")
    )
    project.raw.mkdir()
    generate_raw(project.raw, rows=20_000, months="2015-01:2015-04", seed=11)
    project.build()
    return project


@pytest.fixture(scope="session")
def dbt_target(built_lake) -> Path:
    return built_lake.root / "dbt_target"


@pytest.fixture(scope="session")
def tuned_study(built_lake, tmp_path_factory) -> str:
    """A real 2-trial, 1-epoch study on the built marts; returns its journal path."""
    from training import tune

    folder = tmp_path_factory.mktemp("reports-study")
    storage = str(folder / "optuna.journal")
    argv = [
        "--data", str(built_lake.lake / "trip_features"),
        "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--storage", storage,
        "--study-name", STUDY_NAME,
        "--n-trials", "2",
        "--max-epochs", "1",
        "--batch-sizes", "512",
    ]  # fmt: skip
    assert tune.main(argv) == 0
    return storage


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` from the repo root, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


MODEL_NAME = "dc-taxi-fare"


@dataclass(frozen=True)
class ScoredLake:
    """A built lake whose model_performance has the rows of one registered model version."""

    project: DbtProject
    tracking_uri: str

    @property
    def lake(self) -> Path:
        return self.project.lake

    @property
    def raw(self) -> Path:
        return self.project.raw


@pytest.fixture(scope="session")
def scored_lake(tmp_path_factory, request) -> ScoredLake:
    """`dbt build` of 12,000 generated rows over a year change, `dc-taxi-fare@champion`
    registered, `python -m training.predict`, and `dbt build` again: a user's steps."""
    project = DbtProject(
        tmp_path_factory.mktemp("scored-lake"), request.config.getoption("--dbt-target")
    )
    project.raw.mkdir()
    generate_raw(project.raw, rows=12_000, months="2015-11:2016-02", seed=5)
    project.build()
    tracking_uri = f"sqlite:///{project.root / 'mlflow.db'}"
    # In its own process (MLflow's tracking URI is global), from the project's folder (where
    # MLflow puts the run's artifacts).
    register = (
        "import sys; from scripts.random_fare_models import register_fare_model; "
        "register_fare_model(sys.argv[1], sys.argv[2], seed=0, alias='champion')"
    )
    subprocess.run(
        [sys.executable, "-c", register, tracking_uri, MODEL_NAME],
        cwd=project.root,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=True,
        capture_output=True,
        timeout=600,
    )
    predicted = run_module(
        "training.predict",
        "--data", str(project.lake / "trip_features"),
        "--tracking-uri", tracking_uri,
        "--no-progress",
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    project.build()
    return ScoredLake(project, tracking_uri)
