"""The tuning page of a real study, opened in headless Chromium from disk."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from reports import tuning
from tests.reports.conftest import STUDY_NAME, run_module

pytestmark = pytest.mark.slow

PLOTS = ("history", "intermediate", "importances", "parallel", "slice", "timeline")


def load(storage: str, name: str = STUDY_NAME) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(storage)))


@pytest.fixture(scope="module")
def tuning_page(tuned_study, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tuning-page") / "tuning.html"
    result = run_module(
        "reports.tuning", "--storage", tuned_study, "--study-name", STUDY_NAME, "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return out


def check_plots_drawn(page, plots: tuple[str, ...]) -> None:
    page.wait_for(".js-plotly-plot .main-svg", count=len(plots))
    for anchor in plots:
        assert page.count(f"#plot-{anchor} .js-plotly-plot .main-svg") >= 1, anchor
    assert page.count("script[src]") == 0  # plotly.js is inline, nothing to fetch


def test_tuning_page_draws_every_plot_offline(browser, tuning_page, tuned_study):
    page = browser.open(tuning_page)
    study = load(tuned_study)
    check_plots_drawn(page, PLOTS)
    assert page.number("#summary-trials td") == len(study.trials) == 2
    assert page.count("#trials tbody tr") == len(study.trials)
    best = study.best_trial
    assert page.number("#summary-best-trial td") == best.number
    assert float(page.text("#summary-best-objective td")) == pytest.approx(best.value, rel=1e-3)
    assert page.text("#summary-MLflow-parent-run td") == study.user_attrs["mlflow_parent_run_id"]
    assert page.network_resources() == []
    assert page.console_errors() == []
    page.screenshot("tuning")


def test_pruned_trials_are_listed_and_drawn(browser, tmp_path):
    # A real study whose objective reports per step, so the median pruner stops some trials.
    storage = str(tmp_path / "pruned.journal")
    study = optuna.create_study(
        study_name="pruning",
        storage=JournalStorage(JournalFileBackend(storage)),
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3, 3)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        for step in range(4):
            trial.report((x - 1) ** 2 + 1 / (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return (x - 1) ** 2 + lr

    tuning.quiet_optuna()
    study.optimize(objective, n_trials=12)
    pruned = [t.number for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "the median pruner pruned nothing; the test needs a pruned trial"

    page = browser.open(tuning.write_report(storage, "pruning", tmp_path / "pruned.html"))
    check_plots_drawn(page, PLOTS)
    shown = page.script(
        "return Array.from(document.querySelectorAll('#pruned tbody tr td:first-child'))"
        ".map(td => Number(td.textContent))"
    )
    assert shown == pruned
    assert page.console_errors() == []
    page.screenshot("tuning_pruned")


def test_missing_storage_or_study_names_the_fix(tuned_study, tmp_path):
    result = run_module("reports.tuning", "--storage", str(tmp_path / "none.journal"))
    assert result.returncode == 2
    assert "run `python -m training.tune` first" in result.stderr
    result = run_module("reports.tuning", "--storage", tuned_study, "--study-name", "nope")
    assert result.returncode == 2
    assert f"studies there: {STUDY_NAME}" in result.stderr
    assert "Traceback" not in result.stderr


def test_defaults_are_those_of_training_tune():
    from training.tune import TuneConfig

    assert TuneConfig.storage == tuning.DEFAULT_STORAGE
    assert TuneConfig.study_name == tuning.DEFAULT_STUDY


def test_reports_cli_writes_every_page(built_lake, dbt_target, tuned_study, tmp_path):
    result = run_module(
        "reports",
        "--lake", str(built_lake.lake),
        "--dbt-target", str(dbt_target),
        "--storage", tuned_study,
        "--study-name", STUDY_NAME,
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pages = [Path(line) for line in result.stdout.split()]
    assert pages == [tmp_path / "data_quality.html", tmp_path / "tuning.html"]
    assert all(page.stat().st_size > 0 for page in pages)
