"""The logged fare model as MLflow serves it: named feature columns in, `predicted_fare` out.

MLflow stores this file with every logged model ("models from code") and runs it when the
model is loaded, so loading needs torch, numpy, pandas and MLflow, and nothing of this project.
The network is the `torch.export` program in the model's artifacts (`program`), the train-split
normalisation already folded into its first layer; the feature names and their order come from
the model's config, written by `training.tracking.log_fare_model`.

- `predict(frame)`: a table (pandas DataFrame, or a dict of columns) with the feature columns
  by name, any numeric dtype, extra columns ignored -> a DataFrame with `predicted_fare`
  (dollars). A missing feature column is a one-line error naming it.
- `predict_matrix(x)`: the fast path for batch scoring: float32 [n, features] in config order
  -> float32 [n].
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import torch

OUTPUT = "predicted_fare"
SLICE_ROWS = 8192  # rows per network call: activations of 128 floats per row fit in cache


class MissingFeatures(ValueError):
    """The input lacks feature columns; the message names them."""


class FareModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.features = tuple(context.model_config["features"])
        self.program = torch.export.load(context.artifacts["program"]).module()

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Raw features float32 [n, features] (config order) -> fares in dollars float32 [n].

        The network runs on slices of SLICE_ROWS, so that each layer's output stays in the CPU
        cache instead of streaming a batch-sized activation through memory per layer.
        """
        x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        fares = torch.empty(x.shape[0], dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, x.shape[0], SLICE_ROWS):
                fares[start : start + SLICE_ROWS] = self.program(x[start : start + SLICE_ROWS])
        return fares.numpy()

    def matrix_of(self, frame) -> np.ndarray:
        """The feature columns of `frame`, by name, as float32 [n, features]."""
        columns = frame.columns if isinstance(frame, pd.DataFrame) else frame.keys()
        missing = [name for name in self.features if name not in columns]
        if missing:
            raise MissingFeatures(
                f"missing feature column(s) {', '.join(missing)} — the model needs "
                f"{', '.join(self.features)} (any numeric type; other columns are ignored)"
            )
        return np.column_stack(
            [np.asarray(frame[name], dtype=np.float32) for name in self.features]
        ).reshape(-1, len(self.features))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        fares = self.predict_matrix(self.matrix_of(model_input))
        return pd.DataFrame({OUTPUT: fares.astype(np.float64)})


mlflow.models.set_model(FareModel())
