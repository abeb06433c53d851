"""Default locations of the stores the CLIs read and write; importable without torch or MLflow."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RAW = "data/raw"  # the raw monthly files (dbt var raw_path's default)
DEFAULT_LAKE = "data/lake"  # the lake root (dbt var lake_path's default)
DEFAULT_DATA = f"{DEFAULT_LAKE}/trip_features"  # trip_features' location in the lake
GENERATOR_RECORD = "_generator.json"  # the sample generator's record beside its raw files
DEFAULT_RAW_STATS = f"{DEFAULT_RAW}/{GENERATOR_RECORD}"  # the sample's noise floor
DEFAULT_DB = Path("data") / "mlflow.db"  # MLflow's local store (MLflow 3 refuses ./mlruns)
DEFAULT_MODEL_URI = "models:/dc-taxi-fare@champion"
DEFAULT_EXPERIMENT = "dc-taxi"  # MLflow experiment of training and tuning runs
DEFAULT_STUDY = "dc-taxi"  # Optuna study name
DEFAULT_STORAGE = "data/optuna.journal"  # Optuna storage: a journal file, or an RDB URL


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite file under ./data (MLflow 3 refuses ./mlruns)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB.resolve()}"
