"""Bad numbers and URIs on the training CLIs: one `error:` line and exit 2 before anything
starts — no traceback, no study, no MLflow store touched."""

from __future__ import annotations

import pytest

from training import train, tune, workers


def run_cli(main, argv, capsys) -> str:
    """Run a CLI's main; it must return 2 with no traceback. Its stderr."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--max-epochs", "0"], "--max-epochs must be at least 1 epochs, got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1 rows per batch, got 0"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
        (["--hidden-sizes", "64,zero"], "--hidden-sizes must be comma-separated positive"),
        (["--tracking-uri", "file:///tmp/mlruns"], "MLflow 3 refuses a file store"),
        (["--tracking-uri", "sqlite:////proc/dc-taxi/x.db"], "cannot write the SQLite file"),
    ],
)
def test_train_rejects_bad_values_in_one_line(tmp_path, capsys, argv, says):
    data = ["--data", str(tmp_path / "lake" / "trip_features")]
    error = run_cli(train.main, [*data, *argv], capsys)
    (line,) = [line for line in error.splitlines() if line.startswith("error:")]
    assert says in line
    assert not (tmp_path / "catalog.db").exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--n-trials", "-3"], "--n-trials must be at least 0 trials, got -3"),
        (["--max-trials", "0"], "--max-trials must be at least 1 trials"),
        (["--lr-range", "0.1", "0.01"], "--lr-range must be LOW HIGH with 0 < LOW < HIGH"),
        (["--batch-sizes", "256,0"], "--batch-sizes must be comma-separated positive"),
    ],
)
def test_tune_rejects_bad_values_before_touching_the_study(tmp_path, capsys, argv, says):
    journal = tmp_path / "optuna.journal"
    error = run_cli(tune.main, ["--storage", str(journal), *argv], capsys)
    assert says in error
    assert not journal.exists()


def test_workers_reject_zero_workers(tmp_path, capsys):
    error = run_cli(workers.main, ["--workers", "0", "--storage", str(tmp_path / "j")], capsys)
    assert "--workers must be at least 1 worker processes, got 0" in error


def test_abbreviated_flags_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["--n-trial", "3"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --n-trial" in capsys.readouterr().err
