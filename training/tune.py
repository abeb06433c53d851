"""Tune the fare model with Optuna: `python -m training.tune [flags]`.

One MLflow parent run per study and one child run per trial. The study lives in `--storage`
(a journal file by default, or any Optuna RDB URL), so a rerun with the same `--study-name`
resumes it and several processes can work on it at once: `python -m training.workers` starts K
of them on one machine, and the same `python -m training.tune` run on many machines with a
PostgreSQL `--storage` shares one study across them (`--max-trials` caps the study's completed
trials whoever runs them). At the end the best trial is evaluated once on the test split and
registered in the MLflow model registry with the alias `champion`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import mlflow
import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import BaseStorage
from optuna.study import MaxTrialsCallback
from optuna_integration import PyTorchLightningPruningCallback

from lakehouse.builds import PinnedBuild
from training.checks import argument_error
from training.data import TripDataModule
from training.lake import LakeError, discover_split, head_features
from training.lineage import Lineage, log_dataset
from training.model import OPTIMIZERS, FareRegressor
from training.study import (
    DONE,
    RUN_ATTR,
    WORKER_ATTR,
    end_orphan_runs,
    finished_count,
    first_line,
    is_rdb_url,
    masked,
    open_storage,
    reap_dead_local_trials,
    storage_failure,
    worker_label,
)
from training.tracking import configure_tracking, flat_params, log_fare_model
from training.train import (
    TrainConfig,
    add_data_arguments,
    add_run_arguments,
    config_from_args,
    dataset_lineage,
    fit,
    pin_lake,
)

PRUNERS = ("median", "hyperband", "none")
CHAMPION = "champion"
PARENT_ATTR = "mlflow_parent_run_id"
SNAPSHOT_ATTR = "lake_snapshot_id"  # the trip_features snapshot every trial of the study reads
PARENT_WAIT_S = 30.0  # how long a worker waits for the study's creator to record the parent run


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
    max_trials: int | None = None  # stop once the study has this many completed/pruned trials
    sampler_seed: int | None = None  # None: the data seed; workers each need their own
    heartbeat_interval: int | None = 10  # s; RDB storages only (None: off)
    grace_period: int | None = None  # s without a heartbeat before a trial is dead; 2x interval
    max_retry: int | None = 3  # times a trial of a dead worker is queued again
    crown: bool = True  # evaluate + register the best trial at the end (off in workers)
    progress: bool = True


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


def tune_storage(tune: TuneConfig) -> BaseStorage:
    return open_storage(tune.storage, tune.heartbeat_interval, tune.grace_period, tune.max_retry)


def create_or_load_study(tune: TuneConfig, storage: BaseStorage) -> tuple[optuna.Study, bool]:
    """The study, and whether this process created it.

    Creating a study is atomic in every storage (the name is unique), so of several workers
    starting a new study at once exactly one gets True; that one creates the parent run.
    """
    seed = tune.sampler_seed if tune.sampler_seed is not None else tune.base.data.seed
    options = dict(
        study_name=tune.study_name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=make_pruner(tune.pruner, tune.base.max_epochs),
    )
    try:
        return optuna.create_study(direction="minimize", **options), True
    except DuplicatedStudyError:
        return optuna.load_study(**options), False


def run_exists(run_id: str) -> bool:
    try:
        mlflow.MlflowClient().get_run(run_id)
        return True
    except mlflow.exceptions.MlflowException:
        return False  # the study was tracked into a different MLflow store before


def parent_run_id(study: optuna.Study, tune: TuneConfig, experiment_id: str, created: bool) -> str:
    """The study's one MLflow parent run, created once whoever starts the study.

    The creator of the study makes the run and records it on the study; the others use the
    recorded one, waiting (up to PARENT_WAIT_S) while a brand-new study has none yet.
    """
    deadline = time.monotonic() + PARENT_WAIT_S
    while not created:
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is not None:
            if run_exists(run_id):
                return run_id
            break
        if study.trials or time.monotonic() > deadline:
            break  # not a study someone is setting up right now: adopt it
        time.sleep(0.2)
    run = mlflow.MlflowClient().create_run(
        experiment_id, run_name=tune.study_name, tags={"optuna.study": tune.study_name}
    )
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


def prepare_study(tune: TuneConfig, experiment_id: str) -> tuple[optuna.Study, BaseStorage, str]:
    """Create or resume the study and its MLflow parent run (tracking already configured)."""
    storage = tune_storage(tune)
    study, created = create_or_load_study(tune, storage)
    if not created and not is_rdb_url(tune.storage):  # RDB storages have heartbeats
        reap_dead_local_trials(study, storage, tune.max_retry)
    return study, storage, parent_run_id(study, tune, experiment_id, created)


def retried_trial_number(trial: optuna.Trial) -> int | None:
    """The trial this one repeats after its worker died (set by the stale-trial retry)."""
    running = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    frozen = next((t for t in running if t.number == trial.number), None)
    return frozen.system_attrs.get("failed_trial") if frozen is not None else None


class Objective:
    """Train one trial as a child run of the study's parent run; return its best val RMSE."""

    def __init__(self, tune: TuneConfig, parent_id: str, build: PinnedBuild, lineage: Lineage):
        self.tune, self.parent_id, self.build, self.lineage = tune, parent_id, build, lineage

    def __call__(self, trial: optuna.Trial) -> float:
        worker = worker_label()
        trial.set_user_attr(WORKER_ATTR, worker)  # first: a launcher reaps trials by worker
        config = suggest_config(trial, self.tune)
        retry_of = retried_trial_number(trial)
        run = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            parent_run_id=self.parent_id,
            nested=True,
            tags={
                **self.lineage.tags,
                "optuna.study": self.tune.study_name,
                "optuna.trial": str(trial.number),
                "optuna.worker": worker,
                **({"optuna.retry_of": str(retry_of)} if retry_of is not None else {}),
            },
        )
        trial.set_user_attr(RUN_ATTR, run.info.run_id)
        trial_params = {f"trial.{name}": value for name, value in trial.params.items()}
        mlflow.log_params({**flat_params(config), **trial_params})
        log_dataset(self.build, self.lineage)
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
    run_id = best.user_attrs[RUN_ATTR]
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
        _, build = tune.base.data.pin()
        example = head_features(discover_split(build, "validation"))
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


def optimize(
    study: optuna.Study, tune: TuneConfig, parent_id: str, build: PinnedBuild, lineage: Lineage
) -> None:
    """Run trials until `n_trials` here, `timeout`, or the study-wide `max_trials` cap."""
    callbacks = []
    if tune.max_trials is not None:
        if finished_count(study) >= tune.max_trials:
            return
        # Checked after each trial: with K workers the study can end up to K-1 trials over.
        callbacks.append(MaxTrialsCallback(tune.max_trials, states=DONE))
    study.optimize(
        Objective(tune, parent_id, build, lineage),
        n_trials=tune.n_trials,
        timeout=tune.timeout,
        catch=(FloatingPointError,),  # a diverged trial fails; the study goes on
        callbacks=callbacks,
        show_progress_bar=tune.progress,
    )


def log_parent_lineage(tune: TuneConfig, build: PinnedBuild, lineage: Lineage) -> None:
    """Tags, lineage and dataset of the active parent run (never the storage password)."""
    mlflow.set_tags({**lineage.tags, "optuna.storage": masked(tune.storage)})
    mlflow.log_text(lineage.as_json(), "lineage.json")
    log_dataset(build, lineage)


def check_study_snapshot(study: optuna.Study, tune: TuneConfig, build: PinnedBuild) -> None:
    """A study reads one lake build for good: record it, or refuse to resume on another."""
    recorded = study.user_attrs.get(SNAPSHOT_ATTR)
    if recorded is None:
        study.set_user_attr(SNAPSHOT_ATTR, build.snapshot_id)
    elif int(recorded) != build.snapshot_id:
        raise LakeError(
            f"study {tune.study_name} was tuned on lake snapshot {recorded}, but this run would "
            f"read snapshot {build.snapshot_id} (build {build.invocation_id}) — resume it with "
            f"--snapshot {recorded}, or start a new study on this build with --study-name <new>"
        )


def pin_study(tune: TuneConfig) -> tuple[TuneConfig, PinnedBuild, Lineage]:
    """Pin the lake build once for the whole study: every trial and worker reads it."""
    base, build = pin_lake(tune.base)
    return replace(tune, base=base), build, dataset_lineage(base, build)


def finish_study(study: optuna.Study, tune: TuneConfig, parent_id: str) -> dict[str, float]:
    """On the active parent run: close leftover child runs, log the summary, crown the best."""
    end_orphan_runs(study, parent_id)
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


def run(tune: TuneConfig) -> dict[str, float]:
    """Create or resume the study, run the trials, crown the best one.

    A worker (`crown=False`) only runs trials: it leaves the parent run and the champion to
    the launcher that started it.
    """
    tune, build, lineage = pin_study(tune)
    experiment_id = configure_tracking(tune.base.tracking_uri, tune.base.experiment)
    study, _, parent_id = prepare_study(tune, experiment_id)
    check_study_snapshot(study, tune, build)
    if not tune.crown:
        optimize(study, tune, parent_id, build, lineage)
        return study_summary(study)
    with mlflow.start_run(run_id=parent_id):
        log_parent_lineage(tune, build, lineage)
        optimize(study, tune, parent_id, build, lineage)
        return finish_study(study, tune, parent_id)


def build_parser(
    prog: str = "python -m training.tune",
    description: str = "Tune the fare model with Optuna; track trials and the champion in MLflow.",
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    group = parser.add_argument_group("study")
    group.add_argument(
        "--n-trials", type=int, default=TuneConfig.n_trials, help="trials this process runs"
    )
    group.add_argument(
        "--max-trials",
        type=int,
        help="stop once the study has this many completed or pruned trials (all workers)",
    )
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
    group = parser.add_argument_group("parallel workers and fault tolerance")
    group.add_argument(
        "--sampler-seed", type=int, help="TPE seed (default: --seed); distinct per worker"
    )
    group.add_argument(
        "--heartbeat-interval",
        type=int,
        default=TuneConfig.heartbeat_interval,
        help="s between heartbeats of a running trial (RDB storage only; 0: off)",
    )
    group.add_argument(
        "--grace-period",
        type=int,
        help="s without a heartbeat before a trial counts as dead (default: 2x interval)",
    )
    group.add_argument(
        "--max-retry",
        type=int,
        default=TuneConfig.max_retry,
        help="times a dead worker's trial is queued again",
    )
    group.add_argument(
        "--no-crown",
        action="store_true",
        help="only run trials: no summary, test evaluation or registration (worker mode)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_arguments(parser)
    add_run_arguments(parser, max_epochs=5)
    return parser


def tune_config_from_args(args: argparse.Namespace) -> TuneConfig:
    return TuneConfig(
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
        max_trials=args.max_trials,
        sampler_seed=args.sampler_seed,
        heartbeat_interval=args.heartbeat_interval or None,
        grace_period=args.grace_period,
        max_retry=args.max_retry,
        crown=not args.no_crown,
        progress=not args.no_progress,
    )


def one_device_error(args: argparse.Namespace) -> str | None:
    """Trials run on one device each; several devices means several workers, not DDP."""
    if args.devices == 1 and args.strategy in ("auto", "single_device"):
        return None
    return (
        "tuning trains each trial on one device — to use N devices run N workers:"
        " `python -m training.workers --workers N`"
    )


def storage_error(error: BaseException, storage: str) -> str:
    return (
        f"the Optuna storage {masked(storage)} failed ({first_line(error)}) — check that the"
        " database is up (`python -m scripts.postgres_server status`) and rerun; completed"
        " trials are kept"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = argument_error(args) or one_device_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    tune = tune_config_from_args(args)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    try:
        result = run(tune)
    except (LakeError, NoCompletedTrial) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        failure = storage_failure(error)
        if failure is None:
            raise
        print(f"error: {storage_error(failure, tune.storage)}", file=sys.stderr)
        return 3
    print(" ".join(f"{key}={value:.4g}" for key, value in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
