"""The report CLIs answer `--help` and a mistyped flag before importing anything heavy.

Import cost is measured by what gets imported (`tests.cli_imports`), not by the clock: DuckDB,
pyiceberg, matplotlib, Optuna and MLflow take from a tenth of a second to seconds to import,
and none of them may be needed to print help or refuse a flag. Also: every `python -m reports.*`
command is covered, each default is said once, and the mirrored defaults are the modules' own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reports import cli
from tests.cli_imports import ROOT, defaults_said_twice_or_none, heavy_in, run_module

REPORTS = (
    "reports",
    "reports.data_quality",
    "reports.tuning",
    "reports.model",
    "reports.split_analysis",
)
PARSERS = (
    cli.pages_parser,
    cli.data_quality_parser,
    cli.tuning_parser,
    cli.model_parser,
    cli.split_analysis_parser,
)


def test_every_reports_command_is_covered():
    commands = {
        "reports" if path.stem == "__main__" else f"reports.{path.stem}"
        for path in (ROOT / "reports").glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }
    assert commands == set(REPORTS)


@pytest.mark.parametrize("module", REPORTS)
def test_help_imports_nothing_heavy(module):
    done, imported = run_module(module, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {module} [options]")
    assert heavy_in(imported) == []


@pytest.mark.parametrize("module", REPORTS)
def test_a_mistyped_flag_is_two_short_lines_and_nothing_heavy(module):
    done, imported = run_module(module, "--snapshots", "3")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"usage: python -m {module} [options]",
        f"python -m {module}: error: unrecognized arguments: --snapshots 3",
    ]
    assert heavy_in(imported) == []


@pytest.mark.parametrize("parser", PARSERS)
def test_help_says_each_default_once_and_never_none(parser):
    assert defaults_said_twice_or_none(parser()) == []


def test_mirrored_defaults_are_the_modules_own():
    from reports import split_analysis

    assert cli.START_EXPONENT == split_analysis.START_EXPONENT


def test_every_page_is_tried_and_a_missing_input_is_one_line(monkeypatch, capsys):
    """`python -m reports` hands each page its options; a page that cannot be written is one
    `error:` line and exit status 2, and the other pages are still written."""
    from reports import data_quality, model, tuning

    calls = {}
    missing = "no Optuna journal at x — run `python -m training.tune` first"

    def no_study(*args):
        raise tuning.StudyNotFound(missing)

    monkeypatch.setattr(data_quality, "write_report", lambda *a: calls.setdefault("quality", a)[2])
    monkeypatch.setattr(tuning, "write_report", no_study)
    monkeypatch.setattr(model, "write_report", lambda *a: calls.setdefault("model", a)[1])
    assert cli.main_pages(["--lake", "lake", "--snapshot", "7"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == ["data/reports/data_quality.html", "data/reports/model.html"]
    assert err.splitlines() == [f"error: {missing}"]
    assert calls["quality"] == (
        Path("lake"),
        Path("dbt_project/target"),
        Path("data/reports/data_quality.html"),
        7,
        None,
    )
    assert calls["model"] == (
        "lake/trip_features",
        Path("data/reports/model.html"),
        "models:/dc-taxi-fare@champion",
        None,
        Path("data/raw"),
        7,
        None,
    )
