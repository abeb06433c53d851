"""A study's champion: its best trial evaluated once on the test split and registered in MLflow.

The best trial's model is evaluated on the whole test split (metric `test_rmse` on the trial's
run), logged as a servable model and registered as a new version of `--model-name` with the
alias `champion`. The study's parent run then carries what a reader needs at a glance:
metrics `best_val_rmse`, `test_rmse` and, when known, `noise_floor_rmse` (the irreducible
error of the sample data, from the generator's `_generator.json`); tags `model.name`,
`model.version` and `best_trial`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import mlflow
import optuna

from training.data import DataConfig, TripDataModule
from training.lake import SPLITS, discover_split, head_features
from training.lineage import Lineage
from training.model import FareRegressor
from training.study import RUN_ATTR
from training.tracking import log_fare_model
from training.tracking_names import (
    BEST_TRIAL_TAG,
    BEST_VAL_RMSE,
    MODEL_NAME_TAG,
    MODEL_VERSION_TAG,
    NOISE_FLOOR_RMSE,
    TEST_RMSE,
)

if TYPE_CHECKING:
    from training.tune import TuneConfig

logger = logging.getLogger(__name__)
CHAMPION = "champion"


@dataclass(frozen=True)
class Champion:
    """The registered best trial of a study."""

    trial: int
    run_id: str
    best_val_rmse: float
    test_rmse: float
    model_name: str
    version: str


def evaluate_on_test(data: DataConfig, accelerator: str, model: FareRegressor) -> float:
    """Test RMSE (dollars) of a model; exact over the whole test split."""
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (result,) = trainer.test(model, datamodule=TripDataModule(data), verbose=False)
    return float(result[TEST_RMSE])


def registered_version(name: str, run_id: str) -> str | None:
    """The newest version of model `name` registered from run `run_id`, if any."""
    client = mlflow.MlflowClient()
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return max((str(v.version) for v in found), key=int, default=None)


def register(model_uri: str, name: str) -> str:
    """Register `model_uri` as a new version of `name`; MLflow's own lines only with -v."""
    quiet = not logging.getLogger("mlflow").isEnabledFor(logging.INFO)
    with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
        return str(mlflow.register_model(model_uri, name).version)


def crown_best_trial(study: optuna.Study, tune: TuneConfig) -> Champion:
    """Evaluate the best trial on test once, log its model and point `champion` at it.

    A study crowned before (a resumed study whose best trial did not change) keeps its version.
    """
    best = study.best_trial
    run_id = best.user_attrs[RUN_ATTR]
    client = mlflow.MlflowClient()
    version = registered_version(tune.model_name, run_id)
    if version is not None:
        test_rmse = client.get_run(run_id).data.metrics[TEST_RMSE]
    else:
        with tempfile.TemporaryDirectory(prefix="dc-taxi-champion-") as folder:
            checkpoint = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="checkpoint/best.ckpt", dst_path=folder
            )
            model = FareRegressor.load_from_checkpoint(checkpoint, map_location="cpu")
        test_rmse = evaluate_on_test(tune.base.data, tune.base.accelerator, model)
        with mlflow.start_run(run_id=run_id, nested=True):
            mlflow.log_metric(TEST_RMSE, test_rmse)
            _, build = tune.base.data.pin()
            example = head_features(discover_split(build, "validation"))
            info = log_fare_model(model, example)
        version = register(info.model_uri, tune.model_name)
        client.set_model_version_tag(tune.model_name, version, "optuna.trial", best.number)
    client.set_registered_model_alias(tune.model_name, CHAMPION, version)
    return Champion(best.number, run_id, best.value, test_rmse, tune.model_name, version)


def noise_floor(raw_stats: str | None, lineage: Lineage) -> float | None:
    """The sample's noise-floor RMSE from the generator's record `raw_stats`, when that file
    exists and describes the data tuned on (its clean rows = the build's trip_features rows)."""
    if not raw_stats or not Path(raw_stats).is_file():
        return None
    try:
        record = json.loads(Path(raw_stats).read_text())
        floor, clean_rows = float(record["noise_floor_rmse"]), int(record["clean_rows"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("no noise floor from %s: %s", raw_stats, error)
        return None
    rows = sum(int(lineage.tags.get(f"data.{split}.rows", 0)) for split in SPLITS)
    if clean_rows != rows:
        logger.info(
            "no noise floor: %s describes %d clean rows, the data has %d",
            raw_stats,
            clean_rows,
            rows,
        )
        return None
    return floor


def log_champion(champion: Champion, floor: float | None) -> None:
    """The champion's numbers and registered version on the active (parent) run."""
    metrics = {BEST_VAL_RMSE: champion.best_val_rmse, TEST_RMSE: champion.test_rmse}
    if floor is not None:
        metrics[NOISE_FLOOR_RMSE] = floor
    mlflow.log_metrics(metrics)
    mlflow.set_tags(
        {
            MODEL_NAME_TAG: champion.model_name,
            MODEL_VERSION_TAG: champion.version,
            BEST_TRIAL_TAG: str(champion.trial),
        }
    )
