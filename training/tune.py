"""Tune the fare model with Optuna: `python -m training.tune [flags]`.

One MLflow parent run per study and one child run per trial. The study lives in `--storage`
(a journal file by default, or any Optuna RDB URL), so a rerun with the same `--study-name`
resumes it and several processes can work on it at once: `python -m training.workers` starts K
of them on one machine, and the same `python -m training.tune` run on many machines with a
PostgreSQL `--storage` shares one study across them (`--max-trials` caps the study's completed
trials whoever runs them). At the end `training.champion` evaluates the best trial once on
the test split and registers it in the MLflow model registry with the alias `champion`.

Every trial trains until its validation RMSE stops improving (or `--max-epochs`); a new
study's first trial is `training.train`'s default model, a yardstick for the pruner. The
command line is in `training.cli`.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # parse the command line before the heavy imports below
    from training.cli import main_tune

    sys.exit(main_tune())

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlflow
import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import BaseStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial
from optuna_integration import PyTorchLightningPruningCallback

from lakehouse.builds import PinnedBuild
from training.champion import crown_best_trial, log_champion, noise_floor
from training.cli import CommandError, main_tune
from training.defaults import DEFAULT_RAW_STATS, DEFAULT_STORAGE, DEFAULT_STUDY
from training.lineage import Lineage, log_dataset
from training.model import OPTIMIZERS, ModelConfig
from training.study import (
    DONE,
    RUN_ATTR,
    WORKER_ATTR,
    end_orphan_runs,
    finished_count,
    is_rdb_url,
    masked,
    open_storage,
    reap_dead_local_trials,
    worker_label,
)
from training.tracking import configure_tracking, flat_params
from training.tracking_names import BEST_VAL_RMSE, PARENT_RUN_ATTR, TEST_RMSE, VAL_RMSE
from training.train import TrainConfig, dataset_lineage, fit, pin_lake

PARENT_ATTR = PARENT_RUN_ATTR  # study user attr: the study's MLflow parent run
SNAPSHOT_ATTR = "lake_snapshot_id"  # the trip_features snapshot every trial of the study reads
PARENT_WAIT_S = 30.0  # how long a worker waits for the study's creator to record the parent run


class NoCompletedTrial(CommandError):
    """Every trial so far failed or was pruned: there is no model to crown."""


class OtherData(CommandError):
    """The study was tuned on another lake build than this run would read."""


def tuning_base() -> TrainConfig:
    """What every trial trains with unless the trial samples it: up to 12 epochs, the learning
    rate halved when the validation RMSE stalls, stopped after 3 epochs without a better one
    (chosen by measurement with `n_trials`, BENCHMARKS.md)."""
    return TrainConfig(max_epochs=12, patience=3, model=ModelConfig(scheduler="plateau"))


# The first trial trains the default model at this learning rate and batch size: on the
# `make run` sample 4096 rows a batch is 22 steps an epoch, too few to converge in 12 epochs
# at any learning rate tried (1.04-1.09x the noise floor; BENCHMARKS.md, "Tuning defaults").
FIRST_TRIAL_LR = 3e-2
FIRST_TRIAL_BATCH_SIZE = 2048


@dataclass(frozen=True)
class TuneConfig:
    """A study: its search space, budget, storage, and what the best model is registered as."""

    base: TrainConfig = field(default_factory=tuning_base)
    n_trials: int | None = 5
    timeout: float | None = None
    study_name: str = DEFAULT_STUDY
    storage: str = DEFAULT_STORAGE  # a journal file path, or an Optuna RDB URL
    pruner: str = "median"
    max_layers: int = 3
    batch_sizes: tuple[int, ...] = (1024, 2048, 4096)
    lr_range: tuple[float, float] = (1e-4, 3e-2)
    model_name: str = "dc-taxi-fare"
    raw_stats: str | None = DEFAULT_RAW_STATS  # the sample's noise floor, if it fits
    max_trials: int | None = None  # stop once the study has this many completed/pruned trials
    sampler_seed: int | None = None  # None: the data seed; workers each need their own
    heartbeat_interval: int | None = 10  # s; RDB storages only (None: off)
    grace_period: int | None = None  # s without a heartbeat before a trial is dead; 2x interval
    max_retry: int | None = 3  # times a trial of a dead worker is queued again
    crown: bool = True  # evaluate + register the best trial at the end (off in workers)
    progress: str = "plain"  # "bar" (a terminal), "plain" (a line per trial) or "off"


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


def first_trial(tune: TuneConfig) -> dict[str, object]:
    """The parameters of a new study's first trial: the default model of `training.train` at
    FIRST_TRIAL_LR and FIRST_TRIAL_BATCH_SIZE, moved into the search space where it lies
    outside. The study starts from a model known to be good, and the pruner has a yardstick
    from the second trial on."""
    default = tune.base.model
    sizes = default.hidden_sizes[: tune.max_layers]
    low, high = tune.lr_range
    return {
        "n_layers": len(sizes),
        **{f"n_units_l{i}": min(max(units, 8), 256) for i, units in enumerate(sizes)},
        "batch_norm": default.batch_norm,
        "dropout": min(max(default.dropout, 0.0), 0.3),
        "optimizer": default.optimizer,
        "lr": min(max(FIRST_TRIAL_LR, low), high),
        "batch_size": min(tune.batch_sizes, key=lambda size: abs(size - FIRST_TRIAL_BATCH_SIZE)),
    }


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        # From the second trial on: a trial worse than the median of the completed ones at
        # the same epoch (from its second epoch on) stops.
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
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
    """Create or resume the study and its MLflow parent run (tracking already configured).

    The creator queues the first trial only after recording the parent run: until then other
    processes opening the study wait for the run, and a queued trial would tell them the study
    was not being set up.
    """
    storage = tune_storage(tune)
    study, created = create_or_load_study(tune, storage)
    if not created and not is_rdb_url(tune.storage):  # RDB storages have heartbeats
        reap_dead_local_trials(study, storage, tune.max_retry)
    parent_id = parent_run_id(study, tune, experiment_id, created)
    if created:
        study.enqueue_trial(first_trial(tune))
    return study, storage, parent_id


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
            pruning = PyTorchLightningPruningCallback(trial, monitor=VAL_RMSE)
            metrics = fit(replace(config, progress=False), callbacks=[pruning], log_model=False)
            state, status = "COMPLETE", "FINISHED"
            return metrics[BEST_VAL_RMSE]
        except optuna.TrialPruned:
            state, status = "PRUNED", "KILLED"
            raise
        except Exception as error:
            mlflow.set_tag("optuna.error", f"{type(error).__name__}: {error}"[:4000])
            raise
        finally:
            mlflow.set_tag("optuna.state", state)
            mlflow.end_run(status)


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


@dataclass(frozen=True)
class OpenStudy:
    """A study ready for trials: its config with the lake build pinned, the Optuna study and
    storage, its MLflow parent run, and the build's lineage."""

    tune: TuneConfig
    study: optuna.Study
    storage: BaseStorage
    parent_id: str
    build: PinnedBuild
    lineage: Lineage


class Progress:
    """Trials done and the best validation RMSE so far: a bar on a terminal, else one plain
    line per finished trial ("off": nothing)."""

    def __init__(self, mode: str, total: int | None, done: int = 0):
        self.mode, self.total, self.done = mode, total, done
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=done, unit="trial", desc="tuning", dynamic_ncols=True
            )

    def update(self, done: int, study: optuna.Study, note: str) -> None:
        if done == self.done or self.mode == "off":
            return
        best = best_value(study)
        best_text = f"best val_rmse {best:.4f}" if best is not None else "no trial complete yet"
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.bar.set_postfix_str(best_text)
        else:
            of = f"/{self.total}" if self.total else ""
            print(f"{note} ({done}{of}), {best_text}", flush=True)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no completed trial yet
        return None


class TrialProgress(Progress):
    """Progress of the trials of this process, updated by Optuna after each of them."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        value = f" val_rmse {trial.value:.4f}" if trial.value is not None else ""
        note = f"trial {trial.number} {trial.state.name.lower()}{value}"
        self.update(self.done + 1, study, note)


def optimize(opened: OpenStudy) -> None:
    """Run trials until `n_trials` here, `timeout`, or the study-wide `max_trials` cap."""
    study, tune = opened.study, opened.tune
    progress = TrialProgress(tune.progress, tune.n_trials)
    callbacks = [progress]
    if tune.max_trials is not None:
        if finished_count(study) >= tune.max_trials:
            return
        # Checked after each trial: with K workers the study can end up to K-1 trials over.
        callbacks.append(MaxTrialsCallback(tune.max_trials, states=DONE))
    try:
        study.optimize(
            Objective(tune, opened.parent_id, opened.build, opened.lineage),
            n_trials=tune.n_trials,
            timeout=tune.timeout,
            catch=(FloatingPointError,),  # a diverged trial fails; the study goes on
            callbacks=callbacks,
        )
    finally:
        progress.close()


def check_study_snapshot(study: optuna.Study, tune: TuneConfig, build: PinnedBuild) -> None:
    """A study reads one lake build for good: record it, or refuse to resume on another."""
    recorded = study.user_attrs.get(SNAPSHOT_ATTR)
    if recorded is None:
        study.set_user_attr(SNAPSHOT_ATTR, build.snapshot_id)
    elif int(recorded) != build.snapshot_id:
        raise OtherData(
            f"study {tune.study_name} was tuned on lake snapshot {recorded}, this run reads"
            f" snapshot {build.snapshot_id} — start a new study with --study-name <new>, or"
            f" resume this one with --snapshot {recorded}"
        )


def open_study(tune: TuneConfig) -> OpenStudy:
    """Pin the lake build for the whole study, point MLflow at its store, create or resume the
    study and its parent run, and refuse a study tuned on other data."""
    base, build = pin_lake(tune.base)
    tune = replace(tune, base=base)
    lineage = dataset_lineage(base, build)
    experiment_id = configure_tracking(base.tracking_uri, base.experiment)
    study, storage, parent_id = prepare_study(tune, experiment_id)
    check_study_snapshot(study, tune, build)
    return OpenStudy(tune, study, storage, parent_id, build, lineage)


@contextlib.contextmanager
def parent_run(opened: OpenStudy) -> Iterator[None]:
    """The study's parent run, active, with the lineage (never the storage password)."""
    with mlflow.start_run(run_id=opened.parent_id):
        mlflow.set_tags({**opened.lineage.tags, "optuna.storage": masked(opened.tune.storage)})
        mlflow.log_text(opened.lineage.as_json(), "lineage.json")
        log_dataset(opened.build, opened.lineage)
        yield


def finish_study(opened: OpenStudy) -> dict[str, float]:
    """On the active parent run: close leftover child runs, log the summary, crown the best."""
    study, tune = opened.study, opened.tune
    end_orphan_runs(study, opened.parent_id)
    summary = study_summary(study)
    mlflow.log_metrics(summary)
    log_study_plots(study)
    if not summary.get("trials_complete"):
        raise NoCompletedTrial(
            f"study {tune.study_name} has no completed trial — see the `optuna.error` tags"
            " of its trials in MLflow, then rerun to add trials"
        )
    champion = crown_best_trial(study, tune)
    floor = noise_floor(tune.raw_stats, opened.lineage)
    log_champion(champion, floor)
    result = {**summary, BEST_VAL_RMSE: champion.best_val_rmse, TEST_RMSE: champion.test_rmse}
    if floor is not None:
        result["test_vs_noise_floor"] = champion.test_rmse / floor
    return {**result, "model_version": float(champion.version)}


def run(tune: TuneConfig) -> dict[str, float]:
    """Create or resume the study, run the trials, crown the best one.

    A worker (`crown=False`) only runs trials: it leaves the parent run and the champion to
    the launcher that started it.
    """
    opened = open_study(tune)
    if not tune.crown:
        optimize(opened)
        return study_summary(opened.study)
    with parent_run(opened):
        optimize(opened)
        return finish_study(opened)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.tune [flags]` (the command line lives in training.cli)."""
    return main_tune(argv)
