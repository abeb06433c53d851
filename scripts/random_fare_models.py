"""Registered fare models for tests and benchmarks: real MLflow registry entries, randomly
initialised nets.

What a model predicts does not matter to the tests that use these; that predictions, the lake,
dbt and the pages agree about them does.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import torch

from training.lake import FEATURES
from training.model import FareRegressor, export_predictor
from training.tracking import log_fare_model

STATS = {
    "feature_mean": [38.9, -77.0, 38.9, -77.0, 2017.0, 6.5, 4.0, 12.0],
    "feature_std": [0.03, 0.04, 0.03, 0.04, 1.4, 3.4, 2.0, 6.9],
}


def random_trips(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` trips' features in the service area, ints for the time features."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "origin_lat": rng.uniform(38.82, 38.99, rows),
            "origin_lon": rng.uniform(-77.11, -76.92, rows),
            "dest_lat": rng.uniform(38.82, 38.99, rows),
            "dest_lon": rng.uniform(-77.11, -76.92, rows),
            "pickup_year": rng.integers(2015, 2020, rows),
            "pickup_month": rng.integers(1, 13, rows),
            "pickup_dow": rng.integers(1, 8, rows),
            "pickup_hour": rng.integers(0, 24, rows),
        }
    )


def register_fare_model(
    tracking_uri: str, name: str, seed: int, alias: str | None = None
) -> tuple[FareRegressor, str]:
    """Log a fare model (random weights from `seed`) and register it; returns it and its version."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("test-models")
    torch.manual_seed(seed)
    regressor = FareRegressor(**STATS, label_mean=12.0).eval()
    with mlflow.start_run():
        info = log_fare_model(regressor, random_trips(5).to_numpy(np.float64))
    version = str(mlflow.register_model(info.model_uri, name).version)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    return regressor, version


def exported_fares(regressor: FareRegressor, frame: pd.DataFrame) -> np.ndarray:
    """What the exported program predicts for the feature columns of `frame` (float32 math)."""
    with torch.no_grad():
        x = torch.from_numpy(frame[list(FEATURES)].to_numpy(np.float32))
        return export_predictor(regressor)(x).numpy()
