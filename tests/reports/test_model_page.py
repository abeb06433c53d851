"""The model page, built from a really scored lake, opened in headless Chromium from disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lakehouse.builds import list_builds
from lakehouse.catalog import open_catalog
from lakehouse.predictions import predictions_table
from reports.model import ModelNotFound, parse_model_uri, write_report
from tests.pipeline.outputs import current_build, read_mart, read_table
from tests.reports.conftest import MODEL_NAME, run_module
from training.lake import FEATURES, LABEL

SECTIONS = ("model", "headline", "overall", "month", "hour", "deciles", "residuals", "baseline")


@pytest.fixture(scope="module")
def model_page(scored_lake, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model-page") / "model.html"
    result = run_module(
        "reports.model",
        "--data", str(scored_lake.lake / "trip_features"),
        "--tracking-uri", scored_lake.tracking_uri,
        "--raw", str(scored_lake.raw),
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return out


@pytest.fixture(scope="module")
def page(browser, model_page):
    return browser.open(model_page)


@pytest.fixture(scope="module")
def performance(scored_lake) -> pd.DataFrame:
    return pd.DataFrame(read_mart(scored_lake.lake, "model_performance"))


@pytest.fixture(scope="module")
def scored(scored_lake) -> pd.DataFrame:
    """The build's trips with the model's predictions: the oracle, straight from the lake."""
    features = read_table(current_build(scored_lake.lake), "trip_features").to_pandas()
    lake = str(scored_lake.lake)
    predictions = predictions_table(open_catalog(lake, create=False), lake).scan().to_pandas()
    assert set(predictions["model_version"]) == {"1"}
    return features.merge(predictions[["trip_key", "predicted_fare"]], on="trip_key")


def shown(page, selector: str) -> float:
    return float(page.text(selector).replace(",", ""))


@pytest.mark.slow
def test_page_renders_offline_without_console_errors(page):
    assert page.script("return document.title") == f"DC taxi: model {MODEL_NAME} version 1"
    for anchor in SECTIONS:
        assert page.script("return document.getElementById(arguments[0]).offsetHeight", anchor) > 0
    assert page.count("figure img") == 4
    assert page.broken_images() == []
    assert page.network_resources() == []
    assert page.console_errors() == []
    assert page.screenshot("model").stat().st_size > 50_000


@pytest.mark.slow
def test_page_names_the_model_version_and_the_build(page, scored_lake, scored):
    build = current_build(scored_lake.lake)
    assert page.text("#model-name td") == MODEL_NAME
    assert page.text("#model-version td") == "1"
    assert page.text("#model-aliases td") == "champion"
    assert page.text("#build-snapshot td") == str(build.snapshot_id)
    assert page.text("#build-invocation td") == build.invocation_id
    assert f"version 1 on lake build {build.invocation_id}" in page.text("header .meta")
    # Every trip of the build was scored (on the build before: the same trips).
    for split, trips in scored["split"].value_counts().items():
        assert page.number(f"#overall-{split} td:nth-child(2)") == trips
        assert page.number(f"#overall-{split} td:nth-child(3)") == trips


@pytest.mark.slow
def test_test_rmse_is_model_performance_overall_test_row(page, performance, scored):
    (row,) = performance.query("split == 'test' and breakdown == 'overall'").itertuples()
    assert page.text("#headline-test-rmse td") == f"{row.rmse:.3f}"
    assert page.text("#overall-test td:nth-child(4)") == f"{row.rmse:.3f}"
    test = scored[scored["split"] == "test"]
    oracle = np.sqrt(np.mean((test["predicted_fare"] - test[LABEL]) ** 2))
    assert row.rmse == pytest.approx(oracle, rel=1e-9)


@pytest.mark.slow
def test_noise_floor_is_the_generators(page, scored_lake):
    record = json.loads((scored_lake.raw / "_generator.json").read_text())
    assert page.text("#headline-noise-floor td") == f"{record['noise_floor_rmse']:.3f}"
    assert "_generator.json" in page.text("#headline .note")


@pytest.mark.slow
def test_linear_baseline_is_least_squares_on_the_raw_features(page, scored):
    def design(frame: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.ones(len(frame)), frame[list(FEATURES)].to_numpy(float)])

    train, test = scored[scored["split"] == "train"], scored[scored["split"] == "test"]
    weights = np.linalg.lstsq(design(train), train[LABEL].to_numpy(), rcond=None)[0]
    rmse = np.sqrt(np.mean((design(test) @ weights - test[LABEL]) ** 2))
    assert shown(page, "#headline-linear-baseline td") == pytest.approx(rmse, abs=5e-4)
    mean_rmse = np.sqrt(np.mean((train[LABEL].mean() - test[LABEL]) ** 2))
    assert shown(page, "#headline-mean-baseline td") == pytest.approx(mean_rmse, abs=5e-4)
    text = page.text("#baseline")
    assert "ordinary least squares" in text
    assert f"{len(train):,} train trips" in text and f"{len(test):,} test trips" in text


@pytest.mark.slow
def test_rmse_by_month_on_test_reconciles_with_the_predictions(page, scored):
    test = scored[scored["split"] == "test"].assign(
        month=lambda f: f["pickup_year"].astype(str) + "-" + f["pickup_month"].map("{:02d}".format),
        squared=lambda f: (f["predicted_fare"] - f[LABEL]) ** 2,
    )
    by_month = test.groupby("month")["squared"].agg(["mean", "size"])
    months = page.script(
        "return Array.from(document.querySelectorAll('#rmse-by-month tbody tr')).map(tr => tr.id)"
    )
    assert months == [f"month-{month}" for month in by_month.index]
    assert len(months) == 4  # 2015-11 .. 2016-02: across a year change, in time order
    for month, (mean, size) in by_month.iterrows():
        assert shown(page, f"#month-{month} td:nth-child(2)") == pytest.approx(
            np.sqrt(mean), abs=5e-4
        )
        assert page.number(f"#month-{month} td:nth-child(3)") == size


@pytest.mark.slow
def test_no_rows_for_the_model_says_what_to_run(scored_lake, tmp_path):
    out = tmp_path / "model.html"
    result = run_module(
        "reports.model",
        "--data", str(scored_lake.lake / "trip_features"),
        "--tracking-uri", scored_lake.tracking_uri,
        "--model", f"models:/{MODEL_NAME}/99",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"no rows for {MODEL_NAME} version 99" in line
    assert line.endswith("run `python -m training.predict` then `dbt build`")
    assert not out.exists()


@pytest.mark.slow
def test_a_pinned_build_scored_before_prediction_says_what_to_run(scored_lake, tmp_path):
    first = list_builds(str(scored_lake.lake / "trip_features"))[0]["snapshot_id"]
    result = run_module(
        "reports.model",
        "--data", str(scored_lake.lake / "trip_features"),
        "--tracking-uri", scored_lake.tracking_uri,
        "--snapshot", first,
        "--out", str(tmp_path / "model.html"),
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"(trip_features snapshot {first}) has no rows for {MODEL_NAME} version 1" in line


@pytest.mark.slow
def test_the_noise_floor_is_unknown_without_the_generators_record(scored_lake, tmp_path):
    page = write_report(
        str(scored_lake.lake / "trip_features"),
        tmp_path / "model.html",
        tracking_uri=scored_lake.tracking_uri,
        raw=tmp_path,
    ).read_text()
    assert '<tr id="headline-noise-floor"><th>noise floor RMSE</th><td>unknown</td>' in page
    assert f"Noise floor unknown: no {tmp_path / '_generator.json'}" in page


@pytest.mark.slow
def test_reports_cli_writes_the_model_page(scored_lake, tmp_path):
    result = run_module(
        "reports",
        "--lake", str(scored_lake.lake),
        "--dbt-target", str(scored_lake.project.root / "dbt_target"),
        "--storage", str(tmp_path / "no-study.journal"),
        "--tracking-uri", scored_lake.tracking_uri,
        "--raw", str(scored_lake.raw),
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2  # no study: only the tuning page is skipped
    assert result.stdout.split() == [
        str(tmp_path / "data_quality.html"),
        str(tmp_path / "model.html"),
    ]
    assert f"{MODEL_NAME} version 1" in (tmp_path / "model.html").read_text()


def test_the_model_is_named_by_alias_or_version():
    assert parse_model_uri("models:/dc-taxi-fare@champion") == ("dc-taxi-fare", "champion", None)
    assert parse_model_uri("models:/dc-taxi-fare/3") == ("dc-taxi-fare", None, "3")
    for wrong in ("runs:/abc/model", "models:/dc-taxi-fare", "dc-taxi-fare@champion"):
        with pytest.raises(ModelNotFound, match="models:/<name>@<alias>"):
            parse_model_uri(wrong)
