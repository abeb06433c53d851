"""The book's split check, dbt's `splits_are_representative`: quiet on the generator's
hash-random splits, a warning that names the pair on a deliberately biased one, and its
Bonferroni thresholds and p-values (Jinja and portable SQL) against scipy on both engines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import sqlglot
from scipy import stats

from reports import split_analysis
from reports.marts import open_build, scan
from tests.athena.conftest import OfflineDbt
from tests.conftest import DbtProject, generate_raw
from tests.pipeline.split_check import SPLIT_CHECK, shift_test_split_fares, split_check_failures

pytestmark = pytest.mark.slow

ALPHA = 0.05  # the test's alpha in models/marts/trip_features.yml
FARE_SHIFT = 0.5  # dollars added to every test-split fare (5% of the mean): z about 6 here


@pytest.fixture(scope="module")
def raw(tmp_path_factory, request) -> Path:
    """The pipeline tests' data: --pipeline-rows generated rows over six months of 2015."""
    folder = tmp_path_factory.mktemp("split-check-raw")
    rows = request.config.getoption("--pipeline-rows")
    generate_raw(folder, rows=rows, months="2015-01:2015-06")
    return folder


def build_copy(raw: Path, root: Path, target: str, fare_shift: float = 0.0) -> DbtProject:
    """`dbt build --store-failures` of a copy of `raw` (test-split fares moved by `fare_shift`
    dollars): the rows each test returned stay in the warehouse."""
    project = DbtProject(root, target)
    shutil.copytree(raw, project.raw)
    if fare_shift:
        assert shift_test_split_fares(project.raw, fare_shift) > 0
    result = project.dbt("build", "--store-failures")
    assert result.returncode == 0, result.output[-4000:]
    return project


@pytest.fixture(scope="module")
def unbiased(raw, tmp_path_factory, request) -> DbtProject:
    root = tmp_path_factory.mktemp("split-check-unbiased")
    return build_copy(raw, root, request.config.getoption("--dbt-target"))


@pytest.fixture(scope="module")
def biased(raw, tmp_path_factory, request) -> DbtProject:
    root = tmp_path_factory.mktemp("split-check-biased")
    return build_copy(raw, root, request.config.getoption("--dbt-target"), FARE_SHIFT)


def split_check_result(project: DbtProject) -> dict:
    """The split check's entry in the build's run_results.json."""
    results = json.loads((project.root / "dbt_target" / "run_results.json").read_text())
    (result,) = [r for r in results["results"] if r["unique_id"].split(".")[2] == SPLIT_CHECK]
    return result


def analyse(project: DbtProject) -> split_analysis.SplitAnalysis:
    """The data-quality page's split analysis of the project's published build."""
    return split_analysis.analyse(scan(open_build(project.lake), "trip_features"), "trip_features")


def test_hash_random_splits_do_not_warn(unbiased):
    result = split_check_result(unbiased)
    assert (result["status"], result["failures"]) == ("pass", 0)
    assert analyse(unbiased).flagged == []


def test_a_biased_test_split_warns_and_says_what_failed(biased):
    result = split_check_result(biased)
    assert (result["status"], result["failures"]) == ("warn", 1)
    (row,) = split_check_failures(biased)
    assert (row["feature_name"], row["split"]) == ("fare_amount", "test")
    # Six months of one year: pickup_year is constant in train, so 8 features x 2 splits.
    m = 16
    assert row["comparisons"] == m
    assert row["z_score"] > row["z_threshold"] > 0
    assert row["z_threshold"] == pytest.approx(stats.norm.isf(ALPHA / (2 * m)), abs=1e-8)
    assert row["p_value_threshold"] == pytest.approx(ALPHA / m, rel=1e-12)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(row["z_score"]), rel=1e-7)
    assert row["p_value"] < row["p_value_threshold"]


def test_the_report_flags_what_dbt_failed(biased):
    analysis = analyse(biased)
    (row,) = split_check_failures(biased)
    assert [(name, test.split) for name, test in analysis.flagged] == [("fare_amount", "test")]
    (_, test) = analysis.flagged[0]
    assert test.rows == row["row_count"]
    assert test.z == pytest.approx(row["z_score"], rel=1e-9)
    assert test.p_value == pytest.approx(row["p_value"], rel=1e-7)
    assert analysis.comparisons == row["comparisons"]
    assert analysis.z_threshold == pytest.approx(row["z_threshold"], abs=1e-8)
    assert analysis.p_value_threshold == pytest.approx(row["p_value_threshold"], rel=1e-12)


def test_bonferroni_thresholds_known_answers_and_scipy(tmp_path):
    alphas, most = (0.01, 0.05, 0.1), 36
    snippets = {
        f"{alpha}-{m}": f"{{{{ bonferroni_z_threshold({alpha}, {m}) }}}}"
        for alpha in alphas
        for m in range(1, most + 1)
    }
    rendered = OfflineDbt(tmp_path).render(snippets, target="local")
    thresholds = {name: float(text) for name, text in rendered.items()}
    assert round(thresholds["0.05-18"], 4) == 2.9913  # 18 pairs: |z| > 2.9913
    assert round(thresholds["0.05-1"], 4) == 1.96  # one pair: the book's 1.96
    assert round(thresholds["0.05-16"], 4) == 2.9552
    for name, threshold in thresholds.items():
        alpha, m = name.split("-")
        expected = stats.norm.isf(float(alpha) / (2 * int(m)))
        assert threshold == pytest.approx(expected, abs=1e-8), name
        assert threshold == pytest.approx(
            split_analysis.bonferroni_z_threshold(float(alpha), int(m)), abs=1e-8
        )


@pytest.mark.parametrize("target", ["local", "athena"])
def test_p_value_sql_matches_scipy(target, tmp_path):
    """The portable p-value SQL, rendered for each engine and evaluated by DuckDB (Athena's via
    sqlglot's Trino-to-DuckDB translation)."""
    expression = OfflineDbt(tmp_path).render(
        {"p": "{{ normal_two_sided_p_value('z') }}"}, target=target
    )["p"]
    query = f"select {expression} as p from grid order by i"
    if target == "athena":
        query = sqlglot.transpile(query, read="athena", write="duckdb")[0]
    z = np.concatenate([np.linspace(-40.0, 40.0, 8001), [0.0, 7.0710678118654, 7.0710678118655]])
    with duckdb.connect() as con:
        con.execute(
            "create table grid as select unnest(?::double[]) as z, unnest(range(?)) as i",
            [z.tolist(), len(z)],
        )
        p = np.array([row[0] for row in con.execute(query).fetchall()], dtype=float)
    inside = np.abs(z) < 37
    expected = 2 * stats.norm.sf(np.abs(z[inside]))
    assert np.max(np.abs(p[inside] / expected - 1)) < 1e-7
    assert np.all(p[~inside] == 0)  # p < 1e-298 there
