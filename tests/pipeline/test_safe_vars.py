"""dbt vars never become SQL: paths are quoted, numbers and dates are checked, and a failing
on-run-start hook stops the build before any model runs."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from lakehouse.catalog import MARTS, load_mart, open_catalog
from lakehouse.publish import current_snapshots
from tests.conftest import REPO_ROOT, DbtProject, generate_raw
from tests.pipeline.oracle import evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory):
    """One small generated raw folder, copied into each project that needs one."""
    raw = tmp_path_factory.mktemp("safe_vars_raw")
    generate_raw(raw, rows=3_000, months="2016-01:2016-02")
    return raw


def _copy_raw(raw_files, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for path in raw_files.glob("taxi_*.txt"):
        shutil.copy(path, folder)


@pytest.fixture(scope="module")
def built(tmp_path_factory, request, raw_files) -> DbtProject:
    """A project whose raw_path and lake_path both hold a quote and a space, built once."""
    root = tmp_path_factory.mktemp("safe_vars") / "it's my dir"
    project = DbtProject(root, request.config.getoption("--dbt-target"))
    _copy_raw(raw_files, project.raw)
    project.build()
    return project


def _published(project: DbtProject) -> dict[str, int | None]:
    return current_snapshots(open_catalog(project.lake), str(project.lake))


def _row_counts(project: DbtProject) -> dict[str, int]:
    catalog = open_catalog(project.lake)
    return {
        name: load_mart(catalog, project.lake, name).scan().to_arrow().num_rows
        for name in ("trip_features", "trips_rejected")
    }


def test_paths_with_a_quote_and_a_space_build_and_publish(built):
    assert all(snapshot is not None for snapshot in _published(built).values())
    oracle = evaluate(built.raw)
    assert _row_counts(built) == {
        "trip_features": sum(outcome.reason is None for outcome in oracle),
        "trips_rejected": sum(outcome.reason is not None for outcome in oracle),
    }


def _raw_source_exists(project: DbtProject) -> bool:
    with duckdb.connect(str(project.root / "warehouse.duckdb"), read_only=True) as connection:
        found = connection.execute(
            "select count(*) from information_schema.tables"
            " where table_schema = 'main_raw' and table_name = 'trip_lines'"
        ).fetchone()
    return found[0] == 1


def test_an_empty_raw_folder_stops_the_build_before_any_model(built):
    before = _published(built)
    empty = built.root / "empty raw"
    empty.mkdir()
    result = built.dbt("build", raw=empty)
    assert result.returncode != 0
    assert "no raw files matching" in result.output
    assert "OK created" not in result.output
    assert _published(built) == before
    # The hook dropped the previous build's raw source first: nothing can read old lines.
    assert not _raw_source_exists(built)


def test_a_hook_failing_as_it_is_rendered_stops_the_build(built, monkeypatch):
    """The raw-source hook asks the lake how to build (full or incremental) as it renders."""
    before = _published(built)
    with monkeypatch.context() as patch:
        patch.setenv("LAKE_CATALOG_URI", "bogus://nowhere")
        result = built.dbt("build")
    assert result.returncode != 0
    assert "cannot open the lake catalog bogus://nowhere" in result.output
    assert "OK created" not in result.output
    assert _published(built) == before


def _project_failing_its_raw_hook(tmp_path, skip_flag: bool):
    """A copy of the dbt project whose raw-source hook fails as it runs, after it rendered
    (and so dropped the previous raw source)."""
    project_dir = tmp_path / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project", project_dir, ignore=shutil.ignore_patterns("target", "logs")
    )
    config = project_dir / "dbt_project.yml"
    text = config.read_text()
    hook = '  - "{{ declare_raw_source() }}"'
    flag = "skip_nodes_if_on_run_start_fails: true"
    assert hook in text and flag in text
    text = text.replace(hook, "  - \"select error('simulated'); {{ declare_raw_source() }}\"")
    config.write_text(
        text.replace(flag, f"skip_nodes_if_on_run_start_fails: {str(skip_flag).lower()}")
    )
    return project_dir


def test_a_hook_failing_as_it_runs_skips_every_node(built, tmp_path):
    before = _published(built)
    project_dir = _project_failing_its_raw_hook(tmp_path, skip_flag=True)
    result = built.dbt("build", "--project-dir", str(project_dir))
    assert result.returncode != 0
    assert "ERROR hook: dc_taxi.on-run-start" in result.output
    assert "OK created" not in result.output
    assert "SKIP relation main.stg_dc_taxi__trips" in result.output
    assert _published(built) == before


def test_without_dbts_skip_flag_the_staging_guard_stops_the_build(built, tmp_path):
    """The second line of defence: even if dbt ran the models, staging refuses to start."""
    project_dir = _project_failing_its_raw_hook(tmp_path, skip_flag=False)
    result = built.dbt("run", "--project-dir", str(project_dir))
    assert result.returncode != 0
    assert (
        "the on-run-start hook did not declare the raw source "
        '"warehouse"."main_raw"."trip_lines" — see its error above; nothing was built'
    ) in result.output
    assert "OK created" not in result.output


@pytest.mark.parametrize(
    ("raw_name", "message"),
    [
        ("raw') to '{root}/pwned.csv' (format csv); --", "no raw files matching"),
        ("raw'); copy (select 42) to '{root}/pwned.csv'; select ('", "no raw files matching"),
        ("raw[1]", "the raw_path var must name a folder without `*`, `?`, `[` or `\\`"),
    ],
    ids=["copy-options", "copy-statement", "glob-pattern"],
)
def test_a_crafted_raw_path_executes_nothing(dbt_project, raw_files, raw_name, message):
    raw = dbt_project.root / raw_name.format(root=dbt_project.root)
    if "[" in raw_name:
        _copy_raw(raw_files, raw)
    result = dbt_project.dbt("build", raw=raw)
    assert result.returncode != 0
    assert message in result.output
    assert "OK created" not in result.output
    assert not (dbt_project.root / "pwned.csv").exists()
    assert "Traceback" not in result.output


def test_a_crafted_lake_path_is_only_a_folder_name(dbt_project, raw_files):
    _copy_raw(raw_files, dbt_project.raw)
    lake = f"{dbt_project.root}/lake'); copy (select 42) to '{dbt_project.root}/pwned.csv'; --"
    result = dbt_project.dbt("build", extra_vars={"lake_path": lake})
    assert result.returncode == 0, result.output[-3000:]
    assert not (dbt_project.root / "pwned.csv").exists()
    published = current_snapshots(open_catalog(lake), lake)
    assert set(published) == set(MARTS)
    assert all(snapshot is not None for snapshot in published.values())


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("fare_min", "3.25); drop table x; --", "must be a plain number"),
        ("split_fraction_tolerance", "nan", "must be a plain number"),
        ("pickup_date_max", "2019-02-30", "must be a date as YYYY-MM-DD"),
    ],
)
def test_a_bad_number_or_date_var_fails_naming_it(dbt_project, raw_files, name, value, expected):
    _copy_raw(raw_files, dbt_project.raw)
    result = dbt_project.dbt("build", extra_vars={name: value})
    assert result.returncode != 0
    lines = [line for line in result.output.splitlines() if f"the {name} var " in line]
    assert lines, result.output[-3000:]
    assert all(expected in line and repr(value) in line and "--vars" in line for line in lines)
    assert "OK created" not in result.output
    assert "Traceback" not in result.output
