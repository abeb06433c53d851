"""Run a command line as a user does and list what it imported (`python -X importtime`); check
its help.

Import cost is measured by what gets imported, not by the clock: each module in HEAVY takes
more than 50 ms to import on its own (`python -X importtime -c "import <it>"`; most take
hundreds, torch, Lightning, MLflow, scikit-learn, dbt's CLI and scipy.stats seconds), and none
of them may be needed to print help or refuse a flag.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    *("torch", "lightning", "mlflow", "optuna", "optuna_integration", "sklearn"),
    *("pyiceberg", "duckdb", "pyarrow", "pandas", "numpy", "scipy", "sqlalchemy"),
    *("matplotlib", "plotly", "dbt", "boto3", "fsspec", "tqdm"),
)
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def run(command: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime <command>` from the repo root; the result (stderr without the
    import-time lines) and the top-level names of every module it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    imported, other = set(), []
    for line in done.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            imported.add(name.split(".")[0])
        else:
            other.append(line)
    done.stderr = "\n".join(other)
    return done, imported


def run_module(module: str, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`python -m module args`."""
    return run(["-m", module, *args])


def run_script(name: str, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The console script `name` of pyproject.toml, as its installed launcher calls it."""
    module, _, function = SCRIPTS[name].partition(":")
    launcher = (
        f"import sys; from {module} import {function}; sys.argv[0] = {name!r}; "
        f"sys.exit({function}())"
    )
    return run(["-c", launcher, *args])


def heavy_in(imported: set[str]) -> list[str]:
    return sorted(name for name in imported if name in HEAVY)


def defaults_said_twice_or_none(parser: argparse.ArgumentParser) -> list[str]:
    """The options whose help says their default more than once, or shows None or False."""
    formatter = parser.formatter_class(parser.prog)
    return [
        "/".join(action.option_strings)
        for action in parser._actions
        if (text := formatter._expand_help(action)).count("default") > 1
        or "(default: None)" in text
        or "(default: False)" in text
    ]
