"""The tuning page of a real study, opened in headless Chromium from disk."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from reports import tuning
from scripts import mlflow_server
from tests.reports.conftest import STUDY_NAME, run_module

pytestmark = pytest.mark.slow

PLOTS = ("history", "intermediate", "importances", "parallel", "slice", "timeline")
# With fewer completed trials than tuning.MIN_TRIALS_FOR_IMPORTANCES: no importances plot.
FEW_TRIALS_PLOTS = tuple(p for p in PLOTS if p != "importances")


def load(storage: str, name: str = STUDY_NAME) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(storage)))


def tracking_of(storage: str) -> str:
    """The MLflow store the conftest's study was tracked in, beside its journal."""
    return f"sqlite:///{Path(storage).parent / 'mlflow.db'}"


@pytest.fixture(scope="module")
def tuning_page(tuned_study, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tuning-page") / "tuning.html"
    result = run_module(
        "reports.tuning",
        "--storage", tuned_study,
        "--study-name", STUDY_NAME,
        "--tracking-uri", tracking_of(tuned_study),
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert result.stderr == ""  # no MLflow or Optuna info lines
    return out


def check_plots_drawn(page, plots: tuple[str, ...]) -> None:
    page.wait_for(".js-plotly-plot .main-svg", count=len(plots))
    for anchor in plots:
        assert page.count(f"#plot-{anchor} .js-plotly-plot .main-svg") >= 1, anchor
    assert page.count("script[src]") == 0  # plotly.js is inline, nothing to fetch


def test_tuning_page_draws_every_plot_offline(browser, tuning_page, tuned_study):
    page = browser.open(tuning_page)
    study = load(tuned_study)
    check_plots_drawn(page, FEW_TRIALS_PLOTS)
    assert page.number("#summary-trials td") == len(study.trials) == 2
    assert page.count("#trials tbody tr") == len(study.trials)
    best = study.best_trial
    assert page.number("#summary-best-trial td") == best.number
    assert float(page.text("#summary-best-objective td")) == pytest.approx(best.value, rel=1e-3)
    assert page.text("#summary-MLflow-parent-run td") == study.user_attrs["mlflow_parent_run_id"]
    assert page.count("a.mlflow-run") == 0  # a SQLite store has no UI to link to
    assert page.network_resources() == []
    assert page.console_errors() == []
    page.screenshot("tuning")


def test_header_shows_what_the_tune_recorded(browser, tuning_page, tuned_study):
    page = browser.open(tuning_page)
    study = load(tuned_study)
    parent = mlflow.MlflowClient(tracking_uri=tracking_of(tuned_study)).get_run(
        study.user_attrs["mlflow_parent_run_id"]
    )
    metrics, tags = parent.data.metrics, parent.data.tags
    best = study.best_trial
    assert page.text("#result-best-val td") == f"{best.value:.3f} (trial {best.number})"
    # What training.tune records on its parent run is what the page shows.
    assert page.text("#result-test td") == f"{metrics['test_rmse']:.3f}"
    assert page.text("#result-model td") == f"{tags['model.name']} version {tags['model.version']}"
    assert tags["best_trial"] == str(best.number) and page.count("#result-stale") == 0
    assert page.text("#result-noise-floor td") == (
        f"{metrics['noise_floor_rmse']:.3f}" if "noise_floor_rmse" in metrics else "not recorded"
    )
    assert page.count("#result-problem") == 0  # the parent run was read
    order = page.script(
        "return Array.from(document.querySelectorAll('main > section')).map(s => s.id)"
    )
    assert order[:2] == ["result", "summary"]


def test_importances_need_enough_trials(browser, tuning_page):
    page = browser.open(tuning_page)
    caveat = page.text("#too-few-importances")
    assert "the study has 2 completed trials" in caveat
    assert f"shown from {tuning.MIN_TRIALS_FOR_IMPORTANCES} on" in caveat
    assert page.count("#plot-importances") == 0


def test_the_slice_plot_shows_every_parameter_whole(browser, tuning_page, tuned_study):
    page = browser.open(tuning_page)
    check_plots_drawn(page, FEW_TRIALS_PLOTS)
    study = load(tuned_study)
    params = sorted({name for t in study.trials if t.value is not None for name in t.params})
    # Each subplot's x-axis title (plotly's classes xtitle, x2title, ...) names a parameter.
    titles = (
        "Array.from(document.querySelectorAll('#plot-slice text'))"
        ".filter(t => /^x\\d*title$/.test(t.getAttribute('class')))"
    )
    assert page.script(f"return {titles}.map(t => t.textContent)") == params
    # Every axis title and every plot lies inside the section: nothing is clipped.
    clipped = page.script(
        "const right = document.getElementById('slice').getBoundingClientRect().right;"
        f"return {titles}.concat(Array.from(document.querySelectorAll('#plot-slice .main-svg')))"
        ".filter(e => e.getBoundingClientRect().right > right).length"
    )
    assert clipped == 0


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
    check_plots_drawn(page, FEW_TRIALS_PLOTS)
    shown = page.script(
        "return Array.from(document.querySelectorAll('#pruned tbody tr td:first-child'))"
        ".map(td => Number(td.textContent))"
    )
    assert shown == pruned
    # A study tracked nowhere (or an older one): the header says what is not recorded, and why.
    assert page.text("#result-test td") == "not recorded"
    assert page.text("#result-model td") == "not recorded"
    assert "records no MLflow parent run" in page.text("#result-problem")
    assert page.console_errors() == []
    page.screenshot("tuning_pruned")


def toy_tracked_study(folder: Path, n_trials: int) -> tuple[str, str, dict[int, str]]:
    """A study of `n_trials` quick trials tracked as training.tune does: a parent run with the
    recorded results and tags, one child run per trial. Returns (journal, tracking URI, runs)."""
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=tracking)
    experiment = client.create_experiment("toy", artifact_location=(folder / "art").as_uri())
    parent = client.create_run(experiment, run_name="toy")
    for name, value in (("best_val_rmse", 2.011), ("test_rmse", 2.02), ("noise_floor_rmse", 1.93)):
        client.log_metric(parent.info.run_id, name, value)
    client.set_tag(parent.info.run_id, "model.name", "dc-taxi-fare")
    client.set_tag(parent.info.run_id, "model.version", "3")
    storage = str(folder / "toy.journal")
    study = optuna.create_study(
        study_name="toy",
        storage=JournalStorage(JournalFileBackend(storage)),
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    study.set_user_attr("mlflow_parent_run_id", parent.info.run_id)
    runs = {}

    def objective(trial: optuna.Trial) -> float:
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent.info.run_id})
        runs[trial.number] = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        x = trial.suggest_float("x", -3, 3)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.report(2 + (x - 1) ** 2 + lr, 0)  # one "epoch"
        return 2 + (x - 1) ** 2 + lr

    tuning.quiet_optuna()
    study.optimize(objective, n_trials=n_trials)
    return storage, tracking, runs


def test_run_ids_link_to_a_tracking_server(browser, tmp_path):
    n_trials = tuning.MIN_TRIALS_FOR_IMPORTANCES
    storage, tracking, runs = toy_tracked_study(tmp_path, n_trials)
    local = browser.open(tuning.write_report(storage, "toy", tmp_path / "local.html", tracking))
    assert local.text("#result-test td") == "2.020"
    assert local.text("#result-noise-floor td") == "1.930"
    assert local.text("#result-ratio td") == f"{2.02 / 1.93:.3f}"
    assert local.text("#result-model td") == "dc-taxi-fare version 3"
    assert local.count("a.mlflow-run") == local.count("a.mlflow-model") == 0
    check_plots_drawn(local, PLOTS)  # enough completed trials: the importances are drawn

    server = mlflow_server.start(
        tmp_path / "server",
        port=0,
        backend_store_uri=tracking,
        artifacts_destination=str(tmp_path / "artifacts"),
        workers=1,
    )
    try:
        # The credentials of a tracking URI never reach the page.
        uri = server.url.replace("http://", "http://user:sentinel-password@") + "/"
        out = tuning.write_report(storage, "toy", tmp_path / "server.html", uri)
    finally:
        mlflow_server.stop(tmp_path / "server")
    assert "sentinel-password" not in out.read_text()
    page = browser.open(out)
    experiment = mlflow.MlflowClient(tracking_uri=tracking).get_experiment_by_name("toy")
    base = f"{server.url}/#/experiments/{experiment.experiment_id}/runs/"
    links = page.script(
        "return Array.from(document.querySelectorAll('#trials a.mlflow-run'))"
        ".map(a => [a.textContent, a.href])"
    )
    assert links == [[runs[n], base + runs[n]] for n in range(n_trials)]
    model = page.script("return document.querySelector('#result-model a.mlflow-model').href")
    assert model == f"{server.url}/#/models/dc-taxi-fare/versions/3"
    assert page.network_resources() == []  # links, not loads
    assert page.console_errors() == []
    page.screenshot("tuning_tracking_server")


def test_ui_url_drops_credentials_and_needs_a_server():
    def ui(uri: str) -> str | None:
        return tuning.ParentRun("run", uri).ui_url

    assert ui("http://u:secret@127.0.0.1:5000/mlflow/") == "http://127.0.0.1:5000/mlflow"
    assert ui("https://mlflow.example.com") == "https://mlflow.example.com"
    assert ui("sqlite:////tmp/mlflow.db") is None
    assert ui("postgresql://u:p@db/mlflow") is None


def test_missing_storage_or_study_names_the_fix(tuned_study, tmp_path):
    result = run_module("reports.tuning", "--storage", str(tmp_path / "none.journal"))
    assert result.returncode == 2
    assert "run `python -m training.tune` first" in result.stderr
    result = run_module("reports.tuning", "--storage", tuned_study, "--study-name", "nope")
    assert result.returncode == 2
    assert f"studies there: {STUDY_NAME}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_tracking_store_is_not_created(tuned_study, tmp_path):
    store = tmp_path / "none" / "mlflow.db"
    out = tuning.write_report(tuned_study, STUDY_NAME, tmp_path / "page.html", f"sqlite:///{store}")
    assert f"no MLflow store at {store}" in out.read_text()
    assert not store.exists() and not store.parent.exists()


def test_reports_cli_writes_every_page(built_lake, dbt_target, tuned_study, tmp_path):
    result = run_module(
        "reports",
        "--lake", str(built_lake.lake),
        "--dbt-target", str(dbt_target),
        "--storage", tuned_study,
        "--study-name", STUDY_NAME,
        "--tracking-uri", tracking_of(tuned_study),
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    # The study's model has not scored the lake (no `training.predict`): the model page is
    # skipped with one line saying what to run, and the exit status says a page is missing.
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "python -m training.predict" in result.stderr
    pages = [Path(line) for line in result.stdout.split()]
    assert pages == [tmp_path / "data_quality.html", tmp_path / "tuning.html"]
    assert all(page.stat().st_size > 0 for page in pages)
