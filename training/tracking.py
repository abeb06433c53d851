"""MLflow plumbing shared by train and tune: where runs go, per-epoch metrics, the served model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from training.defaults import default_tracking_uri
from training.lake import FEATURES
from training.model import FareRegressor, export_predictor
from training.study import masked


def configure_tracking(tracking_uri: str | None, experiment: str) -> str:
    """Point MLflow at `tracking_uri` and make sure `experiment` exists; returns its id.

    For a local SQLite store the artifacts go to `mlartifacts/` beside the database instead of
    `./mlruns` in whatever directory the command was started from.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.telemetry import set_telemetry_client

    set_telemetry_client()  # re-reads MLFLOW_DISABLE_TELEMETRY
    uri = tracking_uri or default_tracking_uri()
    artifact_location = None
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = (database.parent / "mlartifacts").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        experiment_id = mlflow.create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def flat_params(config: object, prefix: str = "") -> dict[str, str]:
    """A (nested) config dataclass as flat MLflow params: `data.batch_size`, `model.lr`, ...

    URLs are logged without their password (`postgresql+psycopg://user:***@host/db`).
    """
    params: dict[str, str] = {}
    for name, value in vars(config).items():
        if hasattr(value, "__dataclass_fields__"):
            params.update(flat_params(value, f"{prefix}{name}."))
        else:
            text = str(value)
            params[f"{prefix}{name}"] = masked(text) if "://" in text else text
    return params


class MLflowEpochMetrics(L.Callback):
    """Log every epoch's metrics to the active MLflow run (global rank zero only)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or mlflow.active_run() is None:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        mlflow.log_metrics(metrics, step=trainer.current_epoch)


def log_fare_model(model: FareRegressor, example: np.ndarray) -> mlflow.models.model.ModelInfo:
    """Log the raw-feature predictor as an MLflow pyfunc with named columns.

    Inside: a `torch.export` program (no pickle) run by `training/fare_pyfunc.py`, which MLflow
    stores with the model. Input: a table with the feature columns by name (`example`: float
    [n, 8] raw features in `FEATURES` order becomes the input example); output:
    `predicted_fare`, dollars.
    """
    predictor = export_predictor(model)
    batch = torch.export.Dim("batch")
    sample = torch.from_numpy(np.ascontiguousarray(example, np.float32))
    program = torch.export.export(predictor, (sample,), dynamic_shapes=({0: batch},))
    frame = pd.DataFrame(example.astype(np.float64), columns=list(FEATURES))
    with tempfile.TemporaryDirectory(prefix="dc-taxi-model-") as folder:
        path = Path(folder) / "fare_program.pt2"
        torch.export.save(program, path)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("fare_pyfunc.py")),
            artifacts={"program": str(path)},
            model_config={"features": list(FEATURES)},
            signature=fare_signature(),
            input_example=frame,
            metadata={"features": list(FEATURES), "label": "fare_amount (dollars)"},
            # Explicit, so MLflow does not spend seconds inferring them in a subprocess.
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"mlflow=={mlflow.__version__}",
                "numpy",
                "pandas",
            ],
        )


def fare_signature() -> ModelSignature:
    """Named inputs, any numeric type (the model casts); `predicted_fare` (dollars) out.

    The inputs are declared optional only so that MLflow leaves the check to the model, whose
    error names the missing column in one line; every feature is needed.
    """
    inputs = Schema([ColSpec(AnyType(), name, required=False) for name in FEATURES])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", "predicted_fare")]))
