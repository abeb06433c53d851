"""Tune the fare model with Optuna: `python -m training.tune [flags]`.

One MLflow parent run per study and one child run per trial. The study lives in `--storage`
(a journal file by default, or any Optuna RDB URL), so a rerun with the same `--study-name`
resumes it and several processes can work on it at once. At the end the best trial is evaluated
once on the test split and registered in the MLflow model registry with the alias `champion`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import mlflow
import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna_integration import PyTorchLightningPruningCallback

from training.data import TripDataModule
from training.lake import LakeError, discover_split, head_features
from training.lineage import Lineage
from training.model import OPTIMIZERS, FareRegressor
from training.tracking import configure_tracking, flat_params, log_fare_model
from training.train import (
    TrainConfig,
    add_data_arguments,
    add_run_arguments,
    config_from_args,
    dataset_lineage,
    fit,
)

PRUNERS = ("median", "hyperband", "none")
CHAMPION = "champion"


class NoCompletedTrial(RuntimeError):
    """Every trial so far failed or was pruned: there is no model to crown."""


@dataclass(frozen=True)
class TuneConfig:
    """A study: its search space, budget, storage, and what the best model is registered as."""

    base: TrainConfig
    n_trials: int | None = 10
    timeout: float | None = None
    study_name: str = "dc-taxi"
    storage: str = "data/optuna.journal"  # a journal file path, or an Optuna RDB URL
    pruner: str = "median"
    max_layers: int = 3
    batch_sizes: tuple[int, ...] = (1024, 2048, 4096)
    lr_range: tuple[float, float] = (1e-4, 3e-2)
    model_name: str = "dc-taxi-fare"


def suggest_config(trial: optuna.trial.BaseTrial, tune: TuneConfig) -> TrainConfig:
    """Sample one trial's model and batch size; everything else comes from `tune.base`."""
    n_layers = trial.suggest_int("n_layers", 1, tune.max_layers)
    model = replace(
        tune.base.model,
        hidden_sizes=tuple(
            trial.suggest_int(f"n_units_l{i}", 8, 256, log=True) for i in range(n_layers)
        ),
        batch_norm=trial.suggest_categorical("batch_norm", [True, False]),
        dropout=trial.suggest_float("dropout", 0.0, 0.3),
        optimizer=trial.suggest_categorical("optimizer", list(OPTIMIZERS)),
        lr=trial.suggest_float("lr", *tune.lr_range, log=True),
    )
    batch_size = trial.suggest_categorical("batch_size", list(tune.batch_sizes))
    return replace(tune.base, model=model, data=replace(tune.base.data, batch_size=batch_size))


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1))
    return optuna.pruners.NopPruner()


def open_storage(storage: str) -> str | BaseStorage:
    """An Optuna RDB URL as is; anything else is a journal file (multi-process safe)."""
    if "://" in storage:
        return storage
    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(storage))


def parent_run_id(study: optuna.Study, tune: TuneConfig, experiment_id: str) -> str:
    """The study's MLflow parent run: the one recorded on the study if it still exists."""
    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if run_id is not None:
        try:
            mlflow.MlflowClient().get_run(run_id)
            return run_id
        except mlflow.exceptions.MlflowException:
            pass  # the study is being tracked into a different MLflow store now
    run = mlflow.MlflowClient().create_run(
        experiment_id, run_name=tune.study_name, tags={"optuna.study": tune.study_name}
    )
    study.set_user_attr("mlflow_parent_run_id", run.info.run_id)
    return run.info.run_id


class Objective:
    """Train one trial as a child run of the study's parent run; return its best val RMSE."""

    def __init__(self, tune: TuneConfig, parent_id: str, lineage: Lineage):
        self.tune, self.parent_id, self.lineage = tune, parent_id, lineage

    def __call__(self, trial: optuna.Trial) -> float:
        config = suggest_config(trial, self.tune)
        run = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            parent_run_id=self.parent_id,
            nested=True,
            tags={**self.lineage.tags, "optuna.study": self.tune.study_name},
        )
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        mlflow.set_tag("optuna.trial", str(trial.number))
        trial_params = {f"trial.{name}": value for name, value in trial.params.items()}
        mlflow.log_params({**flat_params(config), **trial_params})
        state, status = "FAIL", "FAILED"
        try:
            pruning = PyTorchLightningPruningCallback(trial, monitor="val_rmse")
            metrics = fit(replace(config, progress=False), callbacks=[pruning], log_model=False)
            state, status = "COMPLETE", "FINISHED"
            return metrics["best_val_rmse"]
        except optuna.TrialPruned:
            state, status = "PRUNED", "KILLED"
            raise
        except Exception as error:
            mlflow.set_tag("optuna.error", f"{type(error).__name__}: {error}"[:4000])
            raise
        finally:
            mlflow.set_tag("optuna.state", state)
            mlflow.end_run(status)


def evaluate_on_test(tune: TuneConfig, model: FareRegressor) -> float:
    """Test RMSE (dollars) of a model; exact over the whole test split."""
    datamodule = TripDataModule(tune.base.data)
    trainer = L.Trainer(
        accelerator=tune.base.accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (result,) = trainer.test(model, datamodule=datamodule, verbose=False)
    return float(result["test_rmse"])


def crown_best_trial(study: optuna.Study, tune: TuneConfig) -> dict[str, float]:
    """Evaluate the best trial on test once, log its model and point `champion` at it."""
    best = study.best_trial
    run_id = best.user_attrs["mlflow_run_id"]
    client = mlflow.MlflowClient()
    done = client.get_run(run_id).data.metrics.get("test_rmse")
    if done is not None:  # already evaluated and registered by an earlier session
        return {"best_val_rmse": best.value, "test_rmse": done}
    with tempfile.TemporaryDirectory(prefix="dc-taxi-champion-") as folder:
        checkpoint = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="checkpoint/best.ckpt", dst_path=folder
        )
        model = FareRegressor.load_from_checkpoint(checkpoint, map_location="cpu")
    test_rmse = evaluate_on_test(tune, model)
    with mlflow.start_run(run_id=run_id, nested=True):
        mlflow.log_metric("test_rmse", test_rmse)
        example = head_features(discover_split(tune.base.data.data, "validation"))
        info = log_fare_model(model, example)
    version = mlflow.register_model(info.model_uri, tune.model_name)
    client.set_registered_model_alias(tune.model_name, CHAMPION, version.version)
    client.set_model_version_tag(tune.model_name, version.version, "optuna.trial", best.number)
    return {"best_val_rmse": best.value, "test_rmse": test_rmse}


def log_study_plots(study: optuna.Study) -> None:
    """Optimisation history, parameter importances and parallel coordinates as HTML artifacts."""
    from optuna import visualization

    plots = {
        "optimization_history": visualization.plot_optimization_history,
        "param_importances": visualization.plot_param_importances,
        "parallel_coordinate": visualization.plot_parallel_coordinate,
    }
    with tempfile.TemporaryDirectory(prefix="dc-taxi-plots-") as folder:
        for name, plot in plots.items():
            try:
                figure = plot(study)
            except (ImportError, ValueError, RuntimeError) as error:  # no plotly; < 2 trials
                logging.getLogger(__name__).warning("skipping %s plot: %s", name, error)
                continue
            path = Path(folder) / f"{name}.html"
            figure.write_html(path)
            mlflow.log_artifact(str(path), "optuna")


def study_summary(study: optuna.Study) -> dict[str, float]:
    states = [trial.state.name.lower() for trial in study.trials]
    return {f"trials_{state}": float(states.count(state)) for state in sorted(set(states))}


def run(tune: TuneConfig) -> dict[str, float]:
    """Create or resume the study, run the trials, crown the best one."""
    lineage = dataset_lineage(tune.base)
    experiment_id = configure_tracking(tune.base.tracking_uri, tune.base.experiment)
    study = optuna.create_study(
        study_name=tune.study_name,
        storage=open_storage(tune.storage),
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=tune.base.data.seed),
        pruner=make_pruner(tune.pruner, tune.base.max_epochs),
        load_if_exists=True,
    )
    parent_id = parent_run_id(study, tune, experiment_id)
    with mlflow.start_run(run_id=parent_id):
        mlflow.set_tags({**lineage.tags, "optuna.storage": tune.storage})
        mlflow.log_text(lineage.as_json(), "lineage.json")
        study.optimize(
            Objective(tune, parent_id, lineage),
            n_trials=tune.n_trials,
            timeout=tune.timeout,
            catch=(FloatingPointError,),  # a diverged trial fails; the study goes on
            show_progress_bar=True,
        )
        summary = study_summary(study)
        mlflow.log_metrics(summary)
        log_study_plots(study)
        if not summary.get("trials_complete"):
            raise NoCompletedTrial(
                f"study {tune.study_name} has no completed trial — see the `optuna.error` tags"
                " of its trials in MLflow, then rerun to add trials"
            )
        result = crown_best_trial(study, tune)
        mlflow.log_metrics(result)
        mlflow.set_tag("best_trial", str(study.best_trial.number))
    return {**summary, **result}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.tune",
        description="Tune the fare model with Optuna; track trials and the champion in MLflow.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    group = parser.add_argument_group("study")
    group.add_argument("--n-trials", type=int, default=TuneConfig.n_trials, help="trials to run")
    group.add_argument("--timeout", type=float, help="stop starting trials after this many s")
    group.add_argument("--study-name", default=TuneConfig.study_name, help="resumed if it exists")
    group.add_argument(
        "--storage", default=TuneConfig.storage, help="journal file path or Optuna RDB URL"
    )
    group.add_argument(
        "--pruner", choices=PRUNERS, default=TuneConfig.pruner, help="stops weak trials early"
    )
    group.add_argument(
        "--max-layers", type=int, default=TuneConfig.max_layers, help="hidden layers at most"
    )
    group.add_argument(
        "--batch-sizes",
        default=",".join(map(str, TuneConfig.batch_sizes)),
        help="comma-separated batch sizes to choose from",
    )
    group.add_argument(
        "--lr-range",
        type=float,
        nargs=2,
        default=TuneConfig.lr_range,
        metavar=("LOW", "HIGH"),
        help="learning-rate search range (log scale)",
    )
    group.add_argument("--model-name", default=TuneConfig.model_name, help="registered model")
    add_data_arguments(parser)
    add_run_arguments(parser, max_epochs=5)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune = TuneConfig(
        base=config_from_args(args),
        n_trials=args.n_trials,
        timeout=args.timeout,
        study_name=args.study_name,
        storage=args.storage,
        pruner=args.pruner,
        max_layers=args.max_layers,
        batch_sizes=tuple(int(size) for size in args.batch_sizes.split(",")),
        lr_range=tuple(args.lr_range),
        model_name=args.model_name,
    )
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    try:
        result = run(tune)
    except (LakeError, NoCompletedTrial) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(" ".join(f"{key}={value:.4g}" for key, value in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
