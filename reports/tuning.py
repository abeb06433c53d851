"""The tuning report: the Optuna plots of a study as one self-contained HTML page.

    python -m reports.tuning [--storage data/optuna.journal] [--study-name dc-taxi]
                             [--out data/reports/tuning.html]

Optimisation history, intermediate values (where pruned trials stopped), parameter importances,
parallel coordinates, slices and the timeline, plus a table of every trial with its MLflow run.
plotly.js is embedded in the page once, so it opens without a network.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.importance import FanovaImportanceEvaluator
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from reports import html
from training.study import masked

# The defaults of `python -m training.tune` (training.tune.TuneConfig; a test keeps them equal).
DEFAULT_STORAGE = "data/optuna.journal"
DEFAULT_STUDY = "dc-taxi"
STATE_KIND = {"COMPLETE": "ok", "PRUNED": "warn", "RUNNING": "warn", "WAITING": "warn"}
PLOT_HEIGHT = 460


class StudyNotFound(RuntimeError):
    """The storage or the study does not exist; the message says what to run."""


@dataclass(frozen=True)
class Plot:
    """One Optuna plot for the page and what it shows."""

    anchor: str
    title: str
    explanation: str
    draw: Callable[[optuna.Study], object]


PLOTS = (
    Plot(
        "history",
        "Optimisation history",
        "Objective (best validation RMSE, dollars) of every trial, and the best so far.",
        optuna.visualization.plot_optimization_history,
    ),
    Plot(
        "intermediate",
        "Intermediate values",
        "Validation RMSE after each epoch, one line per trial: the pruner stops a trial whose "
        "curve is worse than the median of earlier trials at the same epoch.",
        optuna.visualization.plot_intermediate_values,
    ),
    Plot(
        "importances",
        "Parameter importances",
        "fANOVA importance of each hyperparameter for the objective (completed trials only).",
        lambda study: optuna.visualization.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0)
        ),
    ),
    Plot(
        "parallel",
        "Parallel coordinates",
        "Each line is a completed trial; its colour is the objective.",
        optuna.visualization.plot_parallel_coordinate,
    ),
    Plot(
        "slice",
        "Slices",
        "Objective against each hyperparameter.",
        optuna.visualization.plot_slice,
    ),
    Plot(
        "timeline",
        "Timeline",
        "When each trial ran and how it ended.",
        optuna.visualization.plot_timeline,
    ),
)


def open_storage(storage: str) -> str | BaseStorage:
    """An Optuna RDB URL as is, or a journal file; never creates an empty one."""
    if "://" not in storage:
        if not Path(storage).is_file():
            raise StudyNotFound(
                f"no Optuna journal at {storage} — run `python -m training.tune` first"
            )
        return JournalStorage(JournalFileBackend(storage))
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise StudyNotFound(
            f"no SQLite file for {storage} — run"
            f" `python -m training.tune --storage {storage}` first"
        )
    return storage


def load_study(storage: str, study_name: str) -> optuna.Study:
    """The study, or an error listing the studies the storage does hold."""
    opened = open_storage(storage)
    try:
        return optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        names = optuna.get_all_study_names(opened)
        found = ", ".join(names) if names else "none"
        raise StudyNotFound(
            f"no study {study_name!r} in {masked(storage)} (studies there: {found}) — pass"
            " --study-name"
            " or run `python -m training.tune` first"
        ) from None


def plot_html(plot: Plot, study: optuna.Study, include_plotlyjs: bool) -> tuple[str, bool]:
    """(HTML of one plot, whether plotly.js went into it); a note when it cannot be drawn."""
    try:
        figure = plot.draw(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        return f'<p class="note">Not drawn: {html.esc(error)}</p>', False
    figure.update_layout(height=PLOT_HEIGHT, margin={"t": 50})
    markup = figure.to_html(
        full_html=False,
        include_plotlyjs=include_plotlyjs,
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="plot" id="plot-{plot.anchor}">{markup}</div>', include_plotlyjs


def duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def params_text(trial: FrozenTrial) -> str:
    def show(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{name}={show(value)}" for name, value in trial.params.items())


def trials_table(study: optuna.Study) -> html.Raw:
    rows = [
        (
            trial.number,
            html.badge(trial.state.name, STATE_KIND.get(trial.state.name, "fail")),
            trial.value,
            len(trial.intermediate_values),
            duration(trial),
            params_text(trial),
            trial.user_attrs.get("mlflow_run_id", ""),
        )
        for trial in study.trials
    ]
    return html.table(
        ["trial", "state", "objective", "epochs reported", "seconds", "parameters", "MLflow run"],
        rows,
        table_id="trials",
        row_ids=[f"trial-{trial.number}" for trial in study.trials],
        scroll=True,
    )


def summary_section(study: optuna.Study, storage: str) -> html.Section:
    states = [trial.state for trial in study.trials]
    rows: list[tuple[str, object]] = [
        ("study", study.study_name),
        ("storage", masked(storage)),
        ("direction", study.direction.name.lower()),
        ("trials", len(states)),
        *((f"trials {s.name.lower()}", states.count(s)) for s in TrialState if s in states),
    ]
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if completed:
        best = study.best_trial
        rows += [
            ("best trial", best.number),
            ("best objective (validation RMSE)", best.value),
            ("best parameters", params_text(best)),
        ]
        if "mlflow_run_id" in best.user_attrs:
            rows.append(("best trial's MLflow run", best.user_attrs["mlflow_run_id"]))
    if "mlflow_parent_run_id" in study.user_attrs:
        rows.append(("MLflow parent run", study.user_attrs["mlflow_parent_run_id"]))
    ids = [f"summary-{name.replace(' ', '-').split('(')[0].strip('-')}" for name, _ in rows]
    body = html.Raw(
        html.key_values(rows, table_id="study-summary", row_ids=ids)
        + "<p>Explore further: <code>mlflow ui</code> and <code>optuna-dashboard</code> on the "
        "same local stores (see the README, “Reports”).</p>"
    )
    return html.Section("summary", "Study", body)


def pruned_section(study: optuna.Study) -> html.Section:
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    rows = [
        (t.number, max(t.intermediate_values, default=None), t.value, params_text(t))
        for t in pruned
    ]
    body = (
        html.table(
            ["trial", "last epoch reported (from 0)", "last validation RMSE", "parameters"],
            rows,
            table_id="pruned",
        )
        if rows
        else html.Raw("<p>No trial was pruned.</p>")
    )
    return html.Section("pruned", "Pruned trials", body)


def render(study: optuna.Study, storage: str) -> str:
    """The whole page; plotly.js goes into the first plot drawn and nowhere else."""
    sections = [summary_section(study, storage)]
    has_values = any(t.value is not None for t in study.trials)
    plotly_done = False
    for plot in PLOTS:
        if has_values:
            markup, embedded = plot_html(plot, study, include_plotlyjs=not plotly_done)
            plotly_done = plotly_done or embedded
        else:
            markup = '<p class="note">No trial has finished yet.</p>'
        sections.append(
            html.Section(plot.anchor, plot.title, html.Raw(f"<p>{plot.explanation}</p>{markup}"))
        )
    sections.append(pruned_section(study))
    sections.append(html.Section("trials", "All trials", trials_table(study)))
    subtitle = f"Optuna study <code>{html.esc(study.study_name)}</code>"
    return html.page(f"DC taxi: tuning study {study.study_name}", subtitle, sections)


def write_report(storage: str, study_name: str, out: Path) -> Path:
    """Load the study, render and write the page; returns its path."""
    study = load_study(storage, study_name)
    return html.write_page(out, render(study, storage))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--storage and --study-name, shared with `python -m reports`."""
    parser.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"Optuna journal file or RDB URL (default {DEFAULT_STORAGE}, as training.tune)",
    )
    parser.add_argument(
        "--study-name", default=DEFAULT_STUDY, help=f"study to report (default {DEFAULT_STUDY})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m reports.tuning",
        description="Write the Optuna plots of a study as one self-contained HTML page.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/reports/tuning.html"),
        help="page to write (default data/reports/tuning.html)",
    )
    return parser


def quiet_optuna() -> None:
    """Keep Optuna's info lines and its plots' "experimental" warnings off the terminal."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_optuna()
    try:
        path = write_report(args.storage, args.study_name, args.out)
    except StudyNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
