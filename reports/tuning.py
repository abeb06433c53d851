"""The tuning report: the Optuna plots of a study as one self-contained HTML page.

    python -m reports.tuning [--storage data/optuna.journal] [--study-name dc-taxi]
                             [--tracking-uri URI] [--out data/reports/tuning.html]

At the top, the result: the best validation RMSE, the test RMSE of the crowned model, the noise
floor and the registered model version, read from the study's MLflow parent run. Then the
optimisation history, intermediate values (where pruned trials stopped), parameter importances
(only from enough completed trials), parallel coordinates, slices and the timeline, and a table
of every trial with its MLflow run (a link into the MLflow UI when the tracking URI is a server).
plotly.js is embedded in the page once, so it opens without a network.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

if __name__ == "__main__":  # parse the command line before the heavy imports below
    from reports.cli import main_tuning

    sys.exit(main_tuning())

import optuna
from optuna.importance import FanovaImportanceEvaluator
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from reports import html

# training.tune's defaults, defined with the command line (a test keeps them equal).
from training.defaults import DEFAULT_STORAGE as DEFAULT_STORAGE
from training.defaults import DEFAULT_STUDY as DEFAULT_STUDY
from training.defaults import default_tracking_uri
from training.study import RUN_ATTR, first_line, masked
from training.tracking_names import (
    BEST_TRIAL_TAG,
    MODEL_NAME_TAG,
    MODEL_VERSION_TAG,
    NOISE_FLOOR_RMSE,
    PARENT_RUN_ATTR,
    TEST_RMSE,
)

PARENT_ATTR = PARENT_RUN_ATTR  # study user attr (what training.tune records)
NOT_RECORDED = "not recorded"
STATE_KIND = {"COMPLETE": "ok", "PRUNED": "warn", "RUNNING": "warn", "WAITING": "warn"}
PLOT_HEIGHT = 460
SLICE_COLUMNS = 3  # parameters per row of slice plots, so each panel stays readable
SLICE_HEIGHT = 360
# fANOVA fits a random forest to (parameters -> objective); from a handful of trials it ranks
# parameters by noise. Below this many completed trials the page says so instead of drawing it.
MIN_TRIALS_FOR_IMPORTANCES = 20


class StudyNotFound(RuntimeError):
    """The storage or the study does not exist; the message says what to run."""


@dataclass(frozen=True)
class Plot:
    """One Optuna plot for the page (one figure or a column of them) and what it shows."""

    anchor: str
    title: str
    explanation: str
    draw: Callable[[optuna.Study], list]
    min_complete: int = 1  # completed trials it needs to mean something
    too_few: str = ""  # why it is not drawn with fewer


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def intermediate_values(study: optuna.Study) -> list:
    """Per-epoch validation RMSE of every trial; an error when no trial reported any."""
    if not any(trial.intermediate_values for trial in study.trials):
        raise ValueError("no trial reported a value per epoch.")
    return [optuna.visualization.plot_intermediate_values(study)]


def slice_rows(study: optuna.Study) -> list:
    """Slice plots of SLICE_COLUMNS parameters each, so every parameter fits the page."""
    names = sorted({name for trial in completed(study) for name in trial.params})
    figures = [
        optuna.visualization.plot_slice(study, params=names[i : i + SLICE_COLUMNS])
        for i in range(0, len(names), SLICE_COLUMNS)
    ]
    for i, figure in enumerate(figures):
        # Optuna sizes a slice plot 300 px per parameter; here it takes the page's width.
        figure.update_layout(width=None, height=SLICE_HEIGHT)
        if i:
            figure.update_layout(title_text="", margin={"t": 40})
    return figures


PLOTS = (
    Plot(
        "history",
        "Optimisation history",
        "Objective (best validation RMSE, dollars) of every trial, and the best so far.",
        lambda study: [optuna.visualization.plot_optimization_history(study)],
    ),
    Plot(
        "intermediate",
        "Intermediate values",
        "Validation RMSE after each epoch, one line per trial: the pruner stops a trial whose "
        "curve is worse than the median of earlier trials at the same epoch.",
        intermediate_values,
    ),
    Plot(
        "importances",
        "Parameter importances",
        "fANOVA importance of each hyperparameter for the objective (completed trials only).",
        lambda study: [
            optuna.visualization.plot_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=0)
            )
        ],
        min_complete=MIN_TRIALS_FOR_IMPORTANCES,
        too_few="fANOVA fits a random forest to the trials' parameters and objective; from so "
        "few trials it ranks the parameters largely by noise. Run more trials "
        "(<code>--n-trials</code>) to see them.",
    ),
    Plot(
        "parallel",
        "Parallel coordinates",
        "Each line is a completed trial; its colour is the objective.",
        lambda study: [optuna.visualization.plot_parallel_coordinate(study)],
    ),
    Plot(
        "slice",
        "Slices",
        "Objective against each hyperparameter, one dot per completed trial (colour: trial "
        "number).",
        slice_rows,
    ),
    Plot(
        "timeline",
        "Timeline",
        "When each trial ran and how it ended.",
        lambda study: [optuna.visualization.plot_timeline(study)],
    ),
)


@dataclass(frozen=True)
class ParentRun:
    """What the tune recorded on the study's MLflow parent run, and where the UI shows it."""

    run_id: str | None
    tracking_uri: str
    experiment_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why the run could not be read

    @property
    def ui_url(self) -> str | None:
        """The MLflow UI's address when the tracking URI is a server (without credentials)."""
        parts = urlsplit(self.tracking_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))

    def run_link(self, run_id: str) -> html.Raw | str:
        """A run id, linked to its page in the MLflow UI when there is one."""
        if not run_id or self.ui_url is None or self.experiment_id is None:
            return run_id
        href = f"{self.ui_url}/#/experiments/{quote(self.experiment_id)}/runs/{quote(run_id)}"
        return html.Raw(f'<a class="mlflow-run" href="{html.esc(href)}">{html.esc(run_id)}</a>')

    def model_link(self) -> html.Raw | str:
        """The registered model and version, linked in the MLflow UI when there is one."""
        name, version = self.tags.get(MODEL_NAME_TAG), self.tags.get(MODEL_VERSION_TAG)
        if not name or not version:
            return NOT_RECORDED
        text = f"{name} version {version}"
        if self.ui_url is None:
            return text
        href = f"{self.ui_url}/#/models/{quote(name)}/versions/{quote(version)}"
        return html.Raw(f'<a class="mlflow-model" href="{html.esc(href)}">{html.esc(text)}</a>')


def missing_store(tracking_uri: str) -> str | None:
    """Why a local tracking store does not exist (a reader never creates one), else None."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
    elif "://" not in tracking_uri or tracking_uri.startswith("file:"):
        path = Path(tracking_uri.removeprefix("file://"))
    else:
        return None
    return None if path.exists() else f"no MLflow store at {path} — pass --tracking-uri"


@contextlib.contextmanager
def quick_http() -> Iterator[None]:
    """One try, 10 s, for an MLflow server (not minutes of retries for a report)."""
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    added = [name for name in wanted if name not in os.environ]
    os.environ.update({name: wanted[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def read_parent_run(study: optuna.Study, tracking_uri: str) -> ParentRun:
    """The study's MLflow parent run: its metrics and tags, or why they cannot be read."""
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id is None:
        return ParentRun(None, tracking_uri, problem="the study records no MLflow parent run")
    problem = missing_store(tracking_uri)
    if problem is not None:
        return ParentRun(run_id, tracking_uri, problem=problem)
    import mlflow  # the page needs it only here

    try:
        with quick_http():
            run = mlflow.MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        return ParentRun(
            run_id,
            tracking_uri,
            problem=f"run {run_id} not read from {masked(tracking_uri)}: {first_line(error)}",
        )
    return ParentRun(
        run_id,
        tracking_uri,
        experiment_id=run.info.experiment_id,
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
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
    """(HTML of one plot, whether plotly.js went into it); a note when it is not drawn."""
    complete = len(completed(study))
    if complete < plot.min_complete:
        return (
            f'<p class="caveat" id="too-few-{plot.anchor}">Not drawn: the study has {complete} '
            f"completed trials, and this is shown from {plot.min_complete} on. "
            f"{plot.too_few}</p>",
            False,
        )
    try:
        figures = plot.draw(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        return f'<p class="note">Not drawn: {html.esc(error)}</p>', False
    if not figures:
        return '<p class="note">Not drawn: no completed trial.</p>', False
    markups = []
    for i, figure in enumerate(figures):
        if len(figures) == 1:
            figure.update_layout(height=PLOT_HEIGHT, margin={"t": 50})
        markups.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=include_plotlyjs and i == 0,
                config={"displaylogo": False, "responsive": True},
            )
        )
    return f'<div class="plot" id="plot-{plot.anchor}">{"".join(markups)}</div>', include_plotlyjs


def duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def rmse(value: float | None) -> html.NumberText:
    """An RMSE in dollars, to 3 decimals."""
    return html.dollars(value)


def params_text(trial: FrozenTrial) -> str:
    def show(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{name}={show(value)}" for name, value in trial.params.items())


def trials_table(study: optuna.Study, parent: ParentRun) -> html.Raw:
    rows = [
        (
            trial.number,
            html.badge(trial.state.name, STATE_KIND.get(trial.state.name, "fail")),
            rmse(trial.value),
            len(trial.intermediate_values),
            html.fixed(duration(trial), 1),
            params_text(trial),
            parent.run_link(trial.user_attrs.get(RUN_ATTR, "")),
        )
        for trial in study.trials
    ]
    return html.table(
        ["trial", "state", "objective", "epochs reported", "seconds", "parameters", "MLflow run"],
        rows,
        table_id="trials",
        row_ids=[f"trial-{trial.number}" for trial in study.trials],
    )


def result_section(study: optuna.Study, parent: ParentRun) -> html.Section:
    """The study's outcome at a glance: validation, test, the noise floor and the model."""
    best = study.best_trial if completed(study) else None
    test, floor = parent.metrics.get(TEST_RMSE), parent.metrics.get(NOISE_FLOOR_RMSE)

    def recorded(value: float | None) -> object:
        return NOT_RECORDED if value is None else rmse(value)

    rows: list[tuple[str, object]] = [
        (
            "best validation RMSE",
            html.Raw(f"{html.esc(rmse(best.value))} (trial {best.number})") if best else "—",
        ),
        ("test RMSE (best trial's model, test split)", recorded(test)),
        ("noise floor RMSE (the best any model can do)", recorded(floor)),
        (
            "test RMSE / noise floor",
            html.fixed(test / floor, 3) if test and floor else "—",
        ),
        ("registered model", parent.model_link()),
    ]
    ids = ["result-best-val", "result-test", "result-noise-floor", "result-ratio", "result-model"]
    notes = ""
    if parent.problem:
        notes += (
            f'<p class="caveat" id="result-problem">Nothing read from MLflow: '
            f"{html.esc(parent.problem)}.</p>"
        )
    crowned = parent.tags.get(BEST_TRIAL_TAG)
    if best is not None and crowned is not None and crowned != str(best.number):
        notes += (
            f'<p class="caveat" id="result-stale">The test RMSE and the registered model are of '
            f"trial {html.esc(crowned)}, the best when they were recorded; trial {best.number} "
            "is best now.</p>"
        )
    body = html.Raw(
        html.key_values(rows, table_id="result", row_ids=ids)
        + notes
        + "<p>RMSE in dollars. The test split is evaluated once, on the best trial's model "
        "only; the noise floor is known for generated data (<code>scripts.generate_raw</code> "
        "records it) and not for the real files.</p>"
    )
    return html.Section("result", "Result", body)


def summary_section(study: optuna.Study, storage: str, parent: ParentRun) -> html.Section:
    states = [trial.state for trial in study.trials]
    rows: list[tuple[str, object]] = [
        ("study", study.study_name),
        ("storage", masked(storage)),
        ("MLflow tracking", masked(parent.tracking_uri)),
        ("direction", study.direction.name.lower()),
        ("trials", len(states)),
        *((f"trials {s.name.lower()}", states.count(s)) for s in TrialState if s in states),
    ]
    if completed(study):
        best = study.best_trial
        rows += [
            ("best trial", best.number),
            ("best objective (validation RMSE)", rmse(best.value)),
            ("best parameters", params_text(best)),
        ]
        if RUN_ATTR in best.user_attrs:
            rows.append(("best trial's MLflow run", parent.run_link(best.user_attrs[RUN_ATTR])))
    if parent.run_id is not None:
        rows.append(("MLflow parent run", parent.run_link(parent.run_id)))
    ids = [f"summary-{name.replace(' ', '-').split('(')[0].strip('-')}" for name, _ in rows]
    explore = (
        f'Open the runs in the <a href="{html.esc(parent.ui_url)}">MLflow UI</a>'
        if parent.ui_url
        else "Explore further: <code>mlflow ui</code>"
    )
    body = html.Raw(
        html.key_values(rows, table_id="study-summary", row_ids=ids)
        + f"<p>{explore} and <code>optuna-dashboard</code> on the same stores (see the README, "
        "“Reports”).</p>"
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


def render(study: optuna.Study, storage: str, parent: ParentRun) -> str:
    """The whole page; plotly.js goes into the first plot drawn and nowhere else."""
    sections = [result_section(study, parent), summary_section(study, storage, parent)]
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
    sections.append(html.Section("trials", "All trials", trials_table(study, parent)))
    subtitle = f"Optuna study <code>{html.esc(study.study_name)}</code>"
    return html.page(f"DC taxi: tuning study {study.study_name}", subtitle, sections)


def write_report(storage: str, study_name: str, out: Path, tracking_uri: str | None = None) -> Path:
    """Load the study and its MLflow parent run, render and write the page; returns its path.

    `tracking_uri` None: where training.tune tracks by default (`default_tracking_uri`).
    """
    study = load_study(storage, study_name)
    parent = read_parent_run(study, tracking_uri or default_tracking_uri())
    return html.write_page(out, render(study, storage, parent))


def write_report_from_args(args: argparse.Namespace, out: Path) -> Path:
    """`write_report` with the options of `reports.cli.tuning_parser`."""
    return write_report(args.storage, args.study_name, out, args.tracking_uri)


def quiet_optuna() -> None:
    """Keep Optuna's and MLflow's info lines and the plots' "experimental" warnings quiet."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
