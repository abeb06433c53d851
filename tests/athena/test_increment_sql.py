"""The SQL an incremental Athena build sends (macros/athena_lake.sql), rendered offline from
the plan `python -m lakehouse athena-build` passes (the var lake_increment): it parses as
Athena SQL, the raw source reads only the planned objects (run on DuckDB), the carried keys
come from the published marts, and a var that is not such a plan stops the build."""

from __future__ import annotations

import duckdb
import pytest
import sqlglot

from tests.athena.conftest import LAKE_PREFIX, RAW_PREFIX, OfflineDbt

PUBLISHED = "0b5e8f0c-3d2a-4c1e-9f7a-1a2b3c4d5e6f"
NEW_FILES = ["taxi_2019_07.txt", "taxi_2019_08.txt"]
SNIPPETS = {
    "raw_source_view": (
        "{% set view = raw_source_relation() %}{% set plan = athena_lake_increment() %}"
        "{{ athena_create_raw_source_view(view, view.incorporate(path={'identifier': "
        "'trip_lines_text'}), athena_raw_prefix(), plan.files) }}"
    ),
    "carried_trip_keys": "{{ athena_carried_trip_keys() }}",
    "placeholder": (
        "{{ athena_lake_placeholder_sql(athena_lake_relation('trip_features', audit=true), "
        "lake_root() ~ '/trip_features/placeholder-' ~ invocation_id ~ '/') }}"
    ),
}


def plan(files: list[str]) -> dict:
    return {"lake_increment": {"mode": "incremental", "files": files, "published_build": PUBLISHED}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    return OfflineDbt(tmp_path_factory.mktemp("increment")).render(
        SNIPPETS, dbt_vars=plan(NEW_FILES)
    )


def test_every_statement_parses_as_athena_sql(rendered):
    for name, sql in rendered.items():
        assert len(sqlglot.parse(sql, read="athena")) == 1, name


def raw_lines_of(view_sql: str, paths: list[str]) -> list[tuple]:
    """Run the view's query on DuckDB over a stand-in lines table holding one line per path."""
    view = sqlglot.parse_one(view_sql, read="athena").expression
    for table in view.find_all(sqlglot.exp.Table):
        if table.name == "trip_lines_text":
            table.replace(sqlglot.exp.to_table("trip_lines_text"))
    connection = duckdb.connect()
    connection.execute('create table trip_lines_text ("$path" varchar, raw_line varchar)')
    connection.executemany(
        "insert into trip_lines_text values (?, ?)", [(path, f"line of {path}") for path in paths]
    )
    return sorted(connection.sql(view.sql("duckdb")).fetchall())


def test_the_raw_source_reads_only_the_planned_files(rendered):
    # A filter on "$path" itself, which lets Athena skip the other objects.
    assert (
        f"\"$path\" in (\n                '{RAW_PREFIX}/taxi_2019_07.txt'"
        in rendered["raw_source_view"]
    )
    paths = [f"{RAW_PREFIX}/{name}" for name in ("taxi_2019_06.txt", *NEW_FILES)]
    paths.append(f"{RAW_PREFIX}/old/taxi_2019_07.txt")
    assert [row[0] for row in raw_lines_of(rendered["raw_source_view"], paths)] == NEW_FILES


def test_a_build_with_nothing_new_reads_no_raw_line(tmp_path):
    view = OfflineDbt(tmp_path).render(
        {"raw_source_view": SNIPPETS["raw_source_view"]}, dbt_vars=plan([])
    )["raw_source_view"]
    assert raw_lines_of(view, [f"{RAW_PREFIX}/taxi_2019_06.txt"]) == []


def test_carried_keys_are_the_published_marts_rows_by_raw_file(rendered):
    query = sqlglot.parse_one(rendered["carried_trip_keys"], read="athena")
    tables = sorted(f"{t.db}.{t.name}" for t in query.find_all(sqlglot.exp.Table))
    assert tables == ["dc_taxi.trip_features", "dc_taxi.trips_rejected"]  # published, not audit
    for select in query.find_all(sqlglot.exp.Select):
        assert select.named_selects == ["trip_key", "source_file"]
        assert "lake_source_file" in select.sql("athena")


def test_the_copy_starts_as_an_iceberg_placeholder_beside_the_published_files(rendered):
    sql = rendered["placeholder"]
    assert "`dc_taxi_audit`.`trip_features`" in sql
    assert f"location '{LAKE_PREFIX}/trip_features/placeholder-" in sql
    assert "'table_type' = 'ICEBERG'" in sql


@pytest.mark.parametrize(
    ("increment", "problem"),
    [
        (plan(["taxi_2019_07.txt', 'x"])["lake_increment"], "is not a taxi_YYYY_MM.txt name"),
        ({**plan(NEW_FILES)["lake_increment"], "published_build": "x'; drop"}, "invocation id"),
        ({**plan(NEW_FILES)["lake_increment"], "files": "taxi_2019_07.txt"}, "must be a list"),
        ({"mode": "append"}, "mode 'full' or 'incremental'"),
    ],
)
def test_a_var_that_is_not_a_plan_stops_the_build(tmp_path, increment, problem):
    result = OfflineDbt(tmp_path).compile(dbt_vars={"lake_increment": increment})
    assert result.returncode != 0
    assert "the lake_increment var is not a plan of `python -m lakehouse athena-build`" in (
        result.output
    )
    assert problem in result.output


def test_full_refresh_with_an_incremental_plan_stops_the_build(tmp_path):
    result = OfflineDbt(tmp_path).dbt(
        "compile", "--no-populate-cache", "--full-refresh", dbt_vars=plan(NEW_FILES)
    )
    assert result.returncode != 0
    assert "--full-refresh with an incremental lake_increment plan" in result.output


def test_the_plan_reads_the_projects_rules_offline(tmp_path):
    """`python -m lakehouse athena-build` asks dbt (offline) for the marts it looks at and the
    vars the rules read; another value of a rule's var is another rules checksum."""
    from lakehouse.athena_build import project_rules
    from scripts.dbt_subprocess import REPO_ROOT

    env = OfflineDbt(tmp_path).env()
    base = {"raw_path": RAW_PREFIX, "lake_path": LAKE_PREFIX}
    rules = project_rules(REPO_ROOT / "dbt_project", base, env)
    assert rules.marts_by_raw_file == ("data_quality_summary", "trip_features", "trips_rejected")
    assert rules.trip_key_marts == ("trip_features", "trips_rejected")
    assert project_rules(REPO_ROOT / "dbt_project", base, env).logic == rules.logic
    stricter = project_rules(REPO_ROOT / "dbt_project", {**base, "fare_max": 150}, env)
    assert stricter.logic != rules.logic
