"""Default locations of the stores the CLIs read and write; importable without torch or MLflow."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA = "data/lake/trip_features"  # trip_features' location in the lake
DEFAULT_DB = Path("data") / "mlflow.db"  # MLflow's local store (MLflow 3 refuses ./mlruns)
DEFAULT_MODEL_URI = "models:/dc-taxi-fare@champion"


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite file under ./data (MLflow 3 refuses ./mlruns)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB.resolve()}"
