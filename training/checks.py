"""Up-front checks of the CLIs' numbers and URIs: one line that says what to do, never a
traceback from deep inside Lightning, Optuna or SQLAlchemy."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

# flag -> (smallest allowed value, what the value is)
AT_LEAST = {
    "max_epochs": (1, "epochs"),
    "batch_size": (1, "rows per batch"),
    "eval_batch_size": (1, "rows per batch"),
    "patience": (0, "epochs"),
    "num_workers": (0, "DataLoader workers"),
    "resident_mb": (0, "MiB"),
    "shuffle_buffer_rows": (1, "rows"),
    "limit_train_batches": (1, "batches"),
    "limit_val_batches": (1, "batches"),
    "val_check_interval": (1, "batches"),
    "devices": (1, "devices"),
    "n_trials": (0, "trials"),
    "max_trials": (1, "trials"),
    "max_layers": (1, "hidden layers"),
    "max_retry": (0, "retries"),
    "heartbeat_interval": (0, "seconds"),
    "grace_period": (1, "seconds"),
    "workers": (1, "worker processes"),
    "threads": (1, "torch threads"),
    "max_restarts": (0, "restarts"),
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def number_errors(args: argparse.Namespace) -> list[str]:
    """Every numeric flag below its minimum, or out of its range."""
    problems = []
    for name, (least, unit) in AT_LEAST.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            problems.append(f"{flag(name)} must be at least {least} {unit}, got {value}")
    for name in ("lr", "timeout", "gradient_clip", "weight_decay"):
        value = getattr(args, name, None)
        positive = name in ("lr", "timeout")
        if value is not None and (value <= 0 if positive else value < 0):
            kind = "positive" if positive else "0 or more"
            problems.append(f"{flag(name)} must be {kind}, got {value}")
    dropout = getattr(args, "dropout", None)
    if dropout is not None and not 0 <= dropout < 1:
        problems.append(f"--dropout must be in [0, 1), got {dropout}")
    for name in ("hidden_sizes", "batch_sizes"):
        text = getattr(args, name, None)
        if text is None:
            continue
        try:
            sizes = [int(part) for part in text.split(",")]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            problems.append(f"{flag(name)} must be comma-separated positive integers, got {text!r}")
    lr_range = getattr(args, "lr_range", None)
    if lr_range is not None and not 0 < lr_range[0] < lr_range[1]:
        problems.append(f"--lr-range must be LOW HIGH with 0 < LOW < HIGH, got {lr_range}")
    return problems


def tracking_uri_error(uri: str | None) -> str | None:
    """Why MLflow could not use `uri` (None: fine, or not checkable from here)."""
    if not uri:
        return None
    if uri.startswith("file:") or "://" not in uri:
        return (
            f"--tracking-uri {uri!r}: MLflow 3 refuses a file store — use "
            "sqlite:///<path>/mlflow.db (or an http:// tracking server)"
        )
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:  # the folder MLflow would create anyway; then a real write, as root sees it too
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            return (
                f"--tracking-uri: cannot write the SQLite file in {folder} ({error.strerror}) — "
                "choose a writable folder"
            )
    return None


def argument_error(args: argparse.Namespace) -> str | None:
    """The first problem with the parsed flags, as one line; None when they are fine."""
    problems = number_errors(args)
    uri_problem = tracking_uri_error(getattr(args, "tracking_uri", None))
    if uri_problem:
        problems.append(uri_problem)
    return problems[0] if problems else None
