"""Train one fare model: `python -m training.train [flags]`.

`fit(config)` is the reusable part (tune calls it once per trial): it trains with checkpointing
and early stopping and logs to whatever MLflow run is active. `main` adds the CLI, the run
itself and its lineage.

Scale-out and fault tolerance: `--devices N --strategy ddp` trains on N devices (N processes;
on CPU they talk over gloo), each reading its own equal share of every epoch. With
`--checkpoint-dir D` the last epoch is kept in `D/last.ckpt`; after a crash, the same command
with `--resume` continues from it, in the same MLflow run, and ends where an uninterrupted run
with the same seed would (the data order and the dropout masks depend only on seed and epoch).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # parse the command line before the heavy imports below
    from training.cli import main_train

    sys.exit(main_train())

import contextlib
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lakehouse.builds import PinnedBuild
from training.cli import CommandError, main_train
from training.data import DataConfig, ShuffleEachEpoch, TripDataModule
from training.defaults import DEFAULT_EXPERIMENT
from training.lake import SPLITS, discover_split, head_features
from training.lineage import Lineage, collect_lineage, log_dataset
from training.model import FareRegressor, ModelConfig
from training.tracking import MLflowEpochMetrics, configure_tracking, flat_params, log_fare_model
from training.tracking_names import BEST_VAL_RMSE, VAL_RMSE


@dataclass(frozen=True)
class TrainConfig:
    """One training run: data, model, trainer and tracking settings."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    max_epochs: int = 10
    patience: int = 3
    gradient_clip: float = 1.0  # 0 = off
    limit_train_batches: int | None = None
    limit_val_batches: int | None = None
    val_check_interval: int | None = None  # batches; None = once per epoch
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"  # "ddp" for several devices; "auto" picks it when devices > 1
    checkpoint_dir: str | None = None  # keep last.ckpt / best.ckpt here (None: a temp dir)
    resume: bool = False  # continue from <checkpoint_dir>/last.ckpt if it exists
    precision: str = "auto"  # bf16-mixed on a GPU that supports it, else 32-true
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    run_name: str | None = None
    progress: bool = True
    model_summary: bool = False


def resolve_precision(config: TrainConfig) -> str:
    if config.precision != "auto":
        return config.precision
    gpu = config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def build_trainer(config: TrainConfig, root: str, callbacks: list[L.Callback]) -> L.Trainer:
    """A Trainer that checkpoints under `root`; integer batch limits only (streams have no len)."""
    return L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=resolve_precision(config),
        max_epochs=config.max_epochs,
        gradient_clip_val=config.gradient_clip or None,
        limit_train_batches=config.limit_train_batches,
        limit_val_batches=config.limit_val_batches,
        val_check_interval=config.val_check_interval,
        default_root_dir=root,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=config.progress,
        enable_model_summary=config.model_summary,
    )


class SeedEachEpoch(L.Callback):
    """Reseed torch, NumPy and `random` from (seed, epoch) when each training epoch starts.

    Dropout masks then depend on the epoch alone, not on how many random numbers were drawn
    before, so a run resumed from a checkpoint trains exactly like one that never stopped.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = np.random.SeedSequence((self.seed, trainer.current_epoch, trainer.global_rank))
        seed = int(state.generate_state(1)[0])
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)


LAST = "last.ckpt"


class CheckpointError(CommandError):
    """The checkpoint directory does not fit the request; the message says what to do."""


@contextlib.contextmanager
def checkpoint_root(config: TrainConfig) -> Iterator[Path]:
    """Where checkpoints go: `config.checkpoint_dir`, or a temp dir removed afterwards."""
    if config.checkpoint_dir is None:
        with tempfile.TemporaryDirectory(prefix="dc-taxi-fit-") as root:
            yield Path(root)
        return
    root = Path(config.checkpoint_dir)
    if not config.resume and any(root.glob("*.ckpt")):
        raise CheckpointError(
            f"{root} already holds checkpoints — pass --resume to continue that run, or choose"
            " another --checkpoint-dir"
        )
    root.mkdir(parents=True, exist_ok=True)
    yield root


def resume_path(config: TrainConfig, root: Path) -> str | None:
    """The checkpoint to continue from: `<root>/last.ckpt` when resuming and it exists."""
    last = root / LAST
    return str(last) if config.resume and last.exists() else None


def fit(
    config: TrainConfig, callbacks: Sequence[L.Callback] = (), log_model: bool = True
) -> dict[str, float]:
    """Train one model and return its best validation RMSE (dollars) and epochs run.

    Logs per-epoch metrics, the best checkpoint (artifact `checkpoint/best.ckpt`) and, with
    `log_model`, the servable model to the active MLflow run, if there is one. With
    `config.resume`, training continues from `<checkpoint_dir>/last.ckpt` when there is one.
    """
    L.seed_everything(config.data.seed, workers=True, verbose=False)
    datamodule = TripDataModule(config.data)
    stats = datamodule.stats
    model = FareRegressor(
        **asdict(config.model),
        feature_mean=stats.mean,
        feature_std=stats.std,
        label_mean=stats.label_mean,
    )
    with checkpoint_root(config) as root:
        checkpoint = ModelCheckpoint(
            dirpath=root,
            monitor=VAL_RMSE,
            mode="min",
            filename="best",
            save_last=config.checkpoint_dir is not None,  # only a kept dir can be resumed
        )
        early_stopping = EarlyStopping(monitor=VAL_RMSE, mode="min", patience=config.patience)
        trainer = build_trainer(
            config,
            str(root),
            [
                checkpoint,
                early_stopping,
                ShuffleEachEpoch(),
                SeedEachEpoch(config.data.seed),
                MLflowEpochMetrics(),
                *callbacks,
            ],
        )
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_path(config, root))
        metrics = {
            BEST_VAL_RMSE: float(checkpoint.best_model_score),
            "epochs": float(trainer.current_epoch),
        }
        if trainer.is_global_zero and mlflow.active_run() is not None:
            mlflow.log_metrics(metrics)
            mlflow.log_artifact(checkpoint.best_model_path, "checkpoint")
            if log_model:
                best_path = checkpoint.best_model_path
                best = FareRegressor.load_from_checkpoint(best_path, map_location="cpu")
                example = head_features(discover_split(datamodule.build, "validation"))
                log_fare_model(best, example)
    return metrics


def dataset_lineage(config: TrainConfig, build: PinnedBuild) -> Lineage:
    """Check every split is there (failing early with the fix) and describe it for MLflow."""
    splits = {split: discover_split(build, split) for split in SPLITS}
    return collect_lineage(config.data.data, build, splits)


# DDP: the processes Lightning launches for ranks > 0 rerun this command; rank 0 passes them
# the snapshot it pinned, so every rank reads the same build.
PINNED_SNAPSHOT_ENV = "DC_TAXI_PINNED_SNAPSHOT"


def pin_lake(config: TrainConfig) -> tuple[TrainConfig, PinnedBuild]:
    """Resolve the lake build once for the whole run (every epoch, every rank)."""
    data = config.data
    if rank_zero_only.rank != 0 and data.snapshot_id is None:
        pinned = os.environ.get(PINNED_SNAPSHOT_ENV)
        data = replace(data, snapshot_id=int(pinned) if pinned else None, as_of=None)
    data, build = data.pin()
    if rank_zero_only.rank == 0:
        os.environ[PINNED_SNAPSHOT_ENV] = str(build.snapshot_id)
    return replace(config, data=data), build


RUN_ID_FILE = "mlflow_run_id"


def resumed_run_id(config: TrainConfig) -> str | None:
    """The MLflow run a `--resume` continues: the one recorded beside its checkpoints."""
    if not (config.resume and config.checkpoint_dir):
        return None
    recorded = Path(config.checkpoint_dir) / RUN_ID_FILE
    return recorded.read_text().strip() if recorded.exists() else None


def run(config: TrainConfig) -> dict[str, float]:
    """One tracked run: lineage, params, training, model (a resumed run continues its own)."""
    config, build = pin_lake(config)
    lineage = dataset_lineage(config, build)
    if rank_zero_only.rank != 0:  # DDP worker processes train but do not track
        return fit(config)
    configure_tracking(config.tracking_uri, config.experiment)
    run_id = resumed_run_id(config)
    if run_id is not None:
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tag("resumed", "true")  # params were logged by the first attempt
            return fit(config)
    with mlflow.start_run(run_name=config.run_name, tags=lineage.tags) as active:
        if config.checkpoint_dir:
            Path(config.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            (Path(config.checkpoint_dir) / RUN_ID_FILE).write_text(active.info.run_id)
        mlflow.log_params(flat_params(config))
        mlflow.log_text(lineage.as_json(), "lineage.json")
        log_dataset(build, lineage)
        return fit(config)


def is_rank_zero() -> bool:
    """Whether this process is DDP's global rank zero (or the only one)."""
    return rank_zero_only.rank == 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.train [flags]` (the command line lives in training.cli)."""
    return main_train(argv)
