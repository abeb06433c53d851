"""The command lines of `training.train`, `training.tune` and `training.workers`.

Flags -> typed config -> the stage's `run`, with one error line and an exit status for what
goes wrong. This module imports only the standard library (and `training.checks`): `--help`
and a mistyped flag answer at once, and torch, Lightning, MLflow and Optuna are imported after
the arguments are checked. Quiet by default: `-v` shows the libraries' info lines (devices,
checkpoints, Optuna's per-trial lines), their warnings and Lightning's model summary.

Defaults: the parsers show the defaults of the config dataclasses (`DataConfig`, `ModelConfig`,
`TrainConfig`, `TuneConfig`, `LaunchConfig`) without importing them; `tests/training/
test_cli_fast.py` keeps the two equal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from training.checks import argument_error
from training.defaults import (
    DEFAULT_DATA,
    DEFAULT_EXPERIMENT,
    DEFAULT_RAW_STATS,
    DEFAULT_STORAGE,
    DEFAULT_STUDY,
)

if TYPE_CHECKING:
    from training.model import ModelConfig
    from training.train import TrainConfig
    from training.tune import TuneConfig
    from training.workers import LaunchConfig

# Mirrors of the config dataclasses' defaults, for the help texts (see the module docstring).
SEED = 42
RESIDENT_MB = 1024
SHUFFLE_BUFFER_ROWS = 1 << 18
BATCH_SIZE = 4096
HIDDEN_SIZES = "128,64"
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "plateau")
PRUNERS = ("median", "hyperband", "none")
TRAIN_MAX_EPOCHS = 10
TUNE_MAX_EPOCHS = 12
TUNE_PATIENCE = 3


class CommandError(RuntimeError):
    """A failure whose message says what to do: one `error:` line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default once, and only where there is one (no "(default: None)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = "default" in text or not action.option_strings
        if isinstance(action, argparse._CountAction):  # -v: "(default: 0)" says nothing
            return text
        if shown or any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def command_parser(prog: str, description: str, epilog: str | None = None):
    """A parser whose usage line is short: a typo gets two lines, not the whole option list;
    named as invoked (`dc-taxi-*` console script, else `prog`); each default said once."""
    invoked = Path(sys.argv[0]).name
    return argparse.ArgumentParser(
        prog=invoked if invoked.startswith("dc-taxi-") else prog,
        usage="%(prog)s [options]",
        description=description,
        epilog=epilog,
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser with -v and --no-progress (see `command_parser`)."""
    parser = command_parser(
        prog, description, "Quiet by default; -v shows the libraries' info lines and warnings."
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more output: library info lines, warnings, model summary (-vv: debug)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (never one when not a TTY)"
    )
    return parser


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help="trip_features' location (<lake_path>/trip_features, a folder or s3://): its "
        "catalog table's current published build is read",
    )
    pin = group.add_mutually_exclusive_group()
    pin.add_argument(
        "--snapshot",
        type=int,
        help="read this trip_features snapshot (an older build; `python -m lakehouse builds`)",
    )
    pin.add_argument(
        "--as-of", help="read the build that was current at this ISO 8601 time (UTC if no zone)"
    )
    group.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    group.add_argument(
        "--resident-mb",
        type=int,
        default=RESIDENT_MB,
        help="hold a split on the device when it fits this many MiB (0: always stream)",
    )
    group.add_argument(
        "--shuffle-buffer-rows",
        type=int,
        default=SHUFFLE_BUFFER_ROWS,
        help="rows mixed together when streaming",
    )
    group.add_argument(
        "--eval-batch-size", type=int, help="validation/test batch size (default: the batch size)"
    )
    group.add_argument("--seed", type=int, default=SEED, help="seed for init and shuffle")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--hidden-sizes", default=HIDDEN_SIZES, help="comma-separated units per hidden layer"
    )
    group.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch norm after each hidden Linear (default: on)",
    )
    group.add_argument("--dropout", type=float, default=0.0, help="dropout rate")
    group.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="optimizer")
    group.add_argument("--lr", type=float, default=3e-3, help="learning rate")
    group.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty")
    group.add_argument(
        "--scheduler", choices=SCHEDULERS, default="none", help="learning-rate decay"
    )
    group.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help="training batch size (rows)"
    )


def add_training_arguments(parser: argparse.ArgumentParser, max_epochs: int, patience: int) -> None:
    group = parser.add_argument_group("training and tracking")
    group.add_argument("--max-epochs", type=int, default=max_epochs, help="epochs at most")
    group.add_argument(
        "--patience",
        type=int,
        default=patience,
        help="stop after this many epochs without a better validation RMSE",
    )
    group.add_argument(
        "--gradient-clip", type=float, default=1.0, help="gradient norm clip (0: off)"
    )
    group.add_argument("--limit-train-batches", type=int, help="train batches per epoch at most")
    group.add_argument("--limit-val-batches", type=int, help="validation batches at most")
    group.add_argument("--val-check-interval", type=int, help="validate every N train batches")
    group.add_argument("--accelerator", default="auto", help="auto, cpu, gpu")
    group.add_argument("--devices", type=int, default=1, help="devices (>1 runs DDP)")
    group.add_argument(
        "--strategy", default="auto", help="auto, ddp (one process per device; gloo on CPU), ..."
    )
    group.add_argument("--precision", default="auto", help="auto, 32-true, bf16-mixed, ...")
    group.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite data/mlflow.db)",
    )
    group.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment")


def train_parser() -> argparse.ArgumentParser:
    parser = new_parser("python -m training.train", "Train one fare model; track it in MLflow.")
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_training_arguments(parser, max_epochs=TRAIN_MAX_EPOCHS, patience=3)
    group = parser.add_argument_group("run")
    group.add_argument("--run-name", help="MLflow run name")
    group.add_argument(
        "--checkpoint-dir", help="keep last.ckpt and best.ckpt here (default: a temp dir)"
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue from <checkpoint-dir>/last.ckpt, in the same MLflow run",
    )
    return parser


def add_study_arguments(parser: argparse.ArgumentParser, n_trials_help: str) -> None:
    group = parser.add_argument_group("study")
    group.add_argument("--n-trials", type=int, default=5, help=n_trials_help)
    group.add_argument(
        "--max-trials",
        type=int,
        help="stop once the study has this many completed or pruned trials (all workers)",
    )
    group.add_argument("--timeout", type=float, help="stop starting trials after this many s")
    group.add_argument(
        "--study-name", default=DEFAULT_STUDY, help="Optuna study; resumed if it exists"
    )
    group.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="journal file path or Optuna RDB URL"
    )
    group.add_argument(
        "--pruner", choices=PRUNERS, default="median", help="stops weak trials early"
    )
    group.add_argument("--max-layers", type=int, default=3, help="hidden layers at most")
    group.add_argument(
        "--batch-sizes", default="1024,2048,4096", help="comma-separated batch sizes to try"
    )
    group.add_argument(
        "--lr-range",
        type=float,
        nargs=2,
        default=(1e-4, 3e-2),
        metavar=("LOW", "HIGH"),
        help="learning-rate search range, log scale (default: 1e-4 3e-2)",
    )
    group.add_argument("--model-name", default="dc-taxi-fare", help="registered MLflow model")
    group.add_argument(
        "--raw-stats",
        default=DEFAULT_RAW_STATS,
        help="the sample generator's record; its noise-floor RMSE is logged beside the test "
        "RMSE when the file exists and describes the data tuned on",
    )
    group = parser.add_argument_group("parallel workers and fault tolerance")
    group.add_argument(
        "--sampler-seed", type=int, help="TPE seed (default: --seed); distinct per worker"
    )
    group.add_argument(
        "--heartbeat-interval",
        type=int,
        default=10,
        help="s between heartbeats of a running trial (RDB storage only; 0: off)",
    )
    group.add_argument(
        "--grace-period",
        type=int,
        help="s without a heartbeat before a trial counts as dead (default: 2x interval)",
    )
    group.add_argument(
        "--max-retry", type=int, default=3, help="times a dead worker's trial is queued again"
    )
    group.add_argument(
        "--no-crown",
        action="store_true",
        help="only run trials: no summary, test evaluation or registration (worker mode)",
    )


def tune_parser(
    prog: str = "python -m training.tune",
    description: str = "Tune the fare model with Optuna; track trials and the champion in MLflow.",
    n_trials_help: str = "trials this process runs",
) -> argparse.ArgumentParser:
    parser = new_parser(prog, description)
    add_study_arguments(parser, n_trials_help)
    add_data_arguments(parser)
    add_training_arguments(parser, max_epochs=TUNE_MAX_EPOCHS, patience=TUNE_PATIENCE)
    return parser


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("launcher")
    group.add_argument("--workers", type=int, default=2, help="worker processes to run")
    group.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="restarts of workers that died, in all, before giving up",
    )
    group.add_argument("--threads", type=int, default=1, help="torch threads per worker")


def workers_parser() -> argparse.ArgumentParser:
    parser = tune_parser(
        prog="python -m training.workers",
        description="Run K tuning workers (processes) on one Optuna study and crown the best.",
        n_trials_help="trials to add to the study, all workers together (--max-trials: the "
        "study's total instead)",
    )
    add_launcher_arguments(parser)
    return parser


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The launcher's command line without its own flags: what every worker gets."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_launcher_arguments(own)
    return own.parse_known_args(argv)[1]


def sizes(text: str) -> tuple[int, ...]:
    return tuple(int(size) for size in text.split(","))


def train_config(args: argparse.Namespace, defaults: ModelConfig | None = None) -> TrainConfig:
    """Flags -> TrainConfig; `defaults` fill the model flags a parser lacks (tune's parser has
    none: every trial samples its model from a base)."""
    from training.data import DataConfig
    from training.model import ModelConfig
    from training.train import TrainConfig

    defaults = defaults or ModelConfig()
    hidden = getattr(args, "hidden_sizes", None)
    model = ModelConfig(
        hidden_sizes=sizes(hidden) if hidden else defaults.hidden_sizes,
        batch_norm=getattr(args, "batch_norm", defaults.batch_norm),
        dropout=getattr(args, "dropout", defaults.dropout),
        optimizer=getattr(args, "optimizer", defaults.optimizer),
        lr=getattr(args, "lr", defaults.lr),
        weight_decay=getattr(args, "weight_decay", defaults.weight_decay),
        scheduler=getattr(args, "scheduler", defaults.scheduler),
    )
    data = DataConfig(
        data=args.data,
        snapshot_id=args.snapshot,
        as_of=args.as_of,
        batch_size=getattr(args, "batch_size", DataConfig.batch_size),
        eval_batch_size=args.eval_batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        shuffle_buffer_rows=args.shuffle_buffer_rows,
        resident_max_bytes=args.resident_mb << 20,
    )
    return TrainConfig(
        data=data,
        model=model,
        max_epochs=args.max_epochs,
        patience=args.patience,
        gradient_clip=args.gradient_clip,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        val_check_interval=args.val_check_interval,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        checkpoint_dir=getattr(args, "checkpoint_dir", None),
        resume=getattr(args, "resume", False),
        precision=args.precision,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        run_name=getattr(args, "run_name", None),
        progress=progress_mode(args) == "bar",
        model_summary=args.verbose > 0,
    )


def tune_config(args: argparse.Namespace) -> TuneConfig:
    from training.tune import TuneConfig, tuning_base

    return TuneConfig(
        base=train_config(args, tuning_base().model),
        n_trials=args.n_trials,
        timeout=args.timeout,
        study_name=args.study_name,
        storage=args.storage,
        pruner=args.pruner,
        max_layers=args.max_layers,
        batch_sizes=sizes(args.batch_sizes),
        lr_range=tuple(args.lr_range),
        model_name=args.model_name,
        raw_stats=args.raw_stats,
        max_trials=args.max_trials,
        sampler_seed=args.sampler_seed,
        heartbeat_interval=args.heartbeat_interval or None,
        grace_period=args.grace_period,
        max_retry=args.max_retry,
        crown=not args.no_crown,
        progress=progress_mode(args),
    )


def launch_config(args: argparse.Namespace) -> LaunchConfig:
    from training.workers import LaunchConfig

    return LaunchConfig(workers=args.workers, threads=args.threads, max_restarts=args.max_restarts)


def progress_mode(args: argparse.Namespace) -> str:
    """ "bar" on a terminal, "plain" lines in a log file, "off" with --no-progress."""
    if args.no_progress:
        return "off"
    return "bar" if sys.stderr.isatty() else "plain"


def one_device_error(args: argparse.Namespace) -> str | None:
    """Trials run on one device each; several devices means several workers, not DDP."""
    if args.devices == 1 and args.strategy in ("auto", "single_device"):
        return None
    return (
        "tuning trains each trial on one device — to use N devices run N workers:"
        " `python -m training.workers --workers N`"
    )


# Library chatter hidden by default (-v shows it): each filter names its message and module.
QUIET_WARNINGS = (
    # torch deprecated LeafSpec; Lightning's own _pytree still builds one for every batch.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch"),
    # training.data shards an epoch across DataLoader workers itself, so its length is exact.
    (UserWarning, r"Your `IterableDataset` has `__len__` defined", r"lightning\.pytorch"),
    # The importance plot of a study with few trials; the tuning page says so in words.
    (UserWarning, r"Some regimes for parameter", r"optuna\.importance"),
    (UserWarning, r"The number of trials is too small to compute", r"optuna\.importance"),
)
QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric", "mlflow", "optuna", "alembic")


def quiet_libraries(verbosity: int) -> None:
    """Hide the known, harmless warnings and MLflow's download bars (before the imports)."""
    if verbosity > 0:
        return
    for category, message, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def quiet_loggers(verbosity: int) -> None:
    """The libraries' INFO lines (GPU/TPU available, tips, MLflow's table creation, Optuna's
    per-trial lines) only with -v. Called after the imports: Lightning and Optuna set their
    loggers' levels when imported."""
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(level)


def storage_error(failure: BaseException, storage: str) -> str:
    from training.study import first_line, masked

    return (
        f"the Optuna storage {masked(storage)} failed ({first_line(failure)}) — check that the"
        " database is up (`python -m scripts.postgres_server status`) and rerun; completed"
        " trials are kept"
    )


def failure(error: Exception, storage: str | None) -> tuple[int, str] | None:
    """(exit status, one line) for a failure the user can fix; None for a bug."""
    from lakehouse.catalog import LakeError

    if isinstance(error, CommandError | LakeError):
        return 2, str(error)
    if storage is None:
        return None
    from training.study import storage_failure

    cause = storage_failure(error)
    return (3, storage_error(cause, storage)) if cause is not None else None


def guarded(action: Callable[[], int], storage: str | None = None) -> int:
    """Run `action`; a failure the user can fix is one `error:` line and exit status 2 (3: the
    Optuna storage failed), anything else a traceback."""
    try:
        return action()
    except Exception as error:
        known = failure(error, storage)
        if known is None:
            raise
        code, message = known
        print(f"error: {message}", file=sys.stderr)
        return code


def refuse(problem: str) -> int:
    print(f"error: {problem}", file=sys.stderr)
    return 2


def print_result(result: dict[str, float]) -> None:
    print(" ".join(f"{key}={value:.4g}" for key, value in result.items()), flush=True)


def main_train(argv: Sequence[str] | None = None) -> int:
    """`python -m training.train` / `dc-taxi-train`."""
    args = train_parser().parse_args(argv)
    problem = argument_error(args)
    if args.resume and not args.checkpoint_dir:
        problem = problem or "--resume needs the --checkpoint-dir of the run to continue"
    if problem:
        return refuse(problem)
    quiet_libraries(args.verbose)
    config = train_config(args)  # imports the stage
    quiet_loggers(args.verbose)

    def train() -> int:
        from training import train

        metrics = train.run(config)
        if train.is_rank_zero():  # one result line, not one per DDP process
            print(json.dumps(metrics), flush=True)
        return 0

    return guarded(train)


def main_tune(argv: Sequence[str] | None = None) -> int:
    """`python -m training.tune` / `dc-taxi-tune`."""
    args = tune_parser().parse_args(argv)
    problem = argument_error(args) or one_device_error(args)
    if problem:
        return refuse(problem)
    quiet_libraries(args.verbose)
    config = tune_config(args)
    quiet_loggers(args.verbose)

    def tune() -> int:
        from training import tune

        print_result(tune.run(config))
        return 0

    return guarded(tune, storage=config.storage)


def main_workers(argv: Sequence[str] | None = None) -> int:
    """`python -m training.workers` / `dc-taxi-workers`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = workers_parser().parse_args(argv)
    problem = argument_error(args) or one_device_error(args)
    if problem:
        return refuse(problem)
    quiet_libraries(args.verbose)
    config, launch = tune_config(args), launch_config(args)
    quiet_loggers(args.verbose)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )

    def work() -> int:
        from training import workers

        print_result(workers.run(config, launch, worker_argv(argv)))
        return 0

    return guarded(work, storage=config.storage)
