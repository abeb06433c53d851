"""The training CLIs and every console script answer `--help` and a mistyped flag before
importing anything heavy.

Import cost is measured by what gets imported (`tests.cli_imports`), not by the clock: torch,
Lightning, MLflow, Optuna and pyiceberg take seconds to import, and none of them may be needed to
print help or refuse a flag. Also: each default is said once, the parsers' defaults are those of
the config dataclasses, and the console scripts point at real functions.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest

from tests.cli_imports import (
    ROOT,
    SCRIPTS,
    defaults_said_twice_or_none,
    heavy_in,
    run_module,
    run_script,
)
from training import cli

CLIS = ("training.train", "training.tune", "training.workers", "training.predict")
# Heavy modules a command line still imports for --help, until its module defers them (the
# generator imports its libraries at the top); anything more fails.
# Console scripts whose parser prints its whole usage for a mistyped flag (no short `usage=`).


@pytest.mark.parametrize("module", [*CLIS, "scripts.generate_raw", "lakehouse"])
def test_help_imports_nothing_heavy(module):
    done, imported = run_module(module, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert heavy_in(imported) == []


@pytest.mark.parametrize("module", CLIS)
def test_a_mistyped_flag_is_two_short_lines_and_nothing_heavy(module):
    done, imported = run_module(module, "--n-trail", "3")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [f"usage: python -m {module} [options]", lines[1]]
    assert "unrecognized arguments: --n-trail" in lines[1]
    assert heavy_in(imported) == []


def test_a_bad_number_is_one_line_and_nothing_heavy():
    done, imported = run_module("training.tune", "--max-epochs", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --max-epochs must be at least 1 epochs, got 0"
    assert heavy_in(imported) == []


@pytest.mark.parametrize("parser", [cli.train_parser, cli.tune_parser, cli.workers_parser])
def test_help_says_each_default_once_and_never_none(parser):
    assert defaults_said_twice_or_none(parser()) == []


def test_workers_say_n_trials_is_study_wide():
    (action,) = [a for a in cli.workers_parser()._actions if "--n-trials" in a.option_strings]
    assert "all workers together" in action.help


def test_parser_defaults_are_the_config_defaults():
    """The help shows mirrored defaults; the configs they build must equal the dataclasses'."""
    from training.train import TrainConfig
    from training.tune import TuneConfig
    from training.workers import LaunchConfig

    train = cli.train_config(cli.train_parser().parse_args([]))
    assert replace(train, progress=TrainConfig.progress) == TrainConfig()
    tune = cli.tune_config(cli.tune_parser().parse_args([]))
    expected = TuneConfig()
    assert replace(tune, progress=expected.progress) == replace(
        expected, base=replace(expected.base, progress=False)
    )
    assert cli.launch_config(cli.workers_parser().parse_args([])) == LaunchConfig()


def test_worker_argv_drops_only_the_launchers_flags():
    argv = ["--workers", "3", "--threads=2", "--n-trials", "5", "-v", "--max-restarts", "1"]
    assert cli.worker_argv(argv) == ["--n-trials", "5", "-v"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_scripts_point_at_main_functions(name):
    module, _, function = SCRIPTS[name].partition(":")
    if not (ROOT / (module.replace(".", "/") + ".py")).exists():
        pytest.skip(f"{module} is not written yet")
    assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_scripts_answer_help_without_heavy_imports(name):
    done, imported = run_script(name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
    assert heavy_in(imported) == []


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_scripts_refuse_a_mistyped_flag_in_two_lines(name):
    done, imported = run_script(name, "--nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"usage: {name} [options]",
        f"{name}: error: unrecognized arguments: --nope",
    ]
    assert heavy_in(imported) == []
