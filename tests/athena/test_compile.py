"""The whole project compiles for Athena offline, into SQL that Athena (Trino) accepts."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from tests.athena.conftest import LAKE_PREFIX, OFFLINE_ENV, RAW_PREFIX, OfflineDbt

# Every function the compiled project may call: each one checked to exist in Trino / Athena
# engine 3 with the argument types used here. A new function must be checked and added; a
# DuckDB-only one (string_split, len, isodow, regexp_full_match, try_strptime, md5 of text,
# parse_filename, ...) fails this test.
TRINO_FUNCTIONS = {
    "abs",
    "avg",
    "cardinality",
    "cast",
    "coalesce",
    "count",
    "date_parse",
    "day_of_week",
    "element_at",
    "extract",
    "floor",
    "from_base",
    "greatest",
    "least",
    "lower",
    "lpad",
    "max",
    "md5",
    "min",
    "ntile",
    "regexp_extract",
    "regexp_like",
    "row_number",
    "split",
    "sqrt",
    "stddev_pop",
    "substr",
    "sum",
    "to_hex",
    "to_utf8",
    "trim",
    "try",
    "try_cast",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[OfflineDbt, dict[str, str]]:
    """`dbt compile --target athena` of the whole project: unique_id -> compiled SQL."""
    dbt = OfflineDbt(tmp_path_factory.mktemp("athena_compile"))
    result = dbt.compile()
    assert result.returncode == 0, result.output[-3000:]
    nodes = dbt.manifest()["nodes"].items()
    sql = {
        unique_id: node.get("compiled_code") or ""
        for unique_id, node in nodes
        if node["resource_type"] in ("model", "test")
    }
    return dbt, sql


def _function_calls(sql: str) -> set[str]:
    tokens = sqlglot.tokenize(sql, read="athena")
    return {
        token.text.lower()
        for token, following in itertools.pairwise(tokens)
        if token.token_type == TokenType.VAR and following.token_type == TokenType.L_PAREN
    }


def test_every_model_and_data_test_compiles(compiled):
    _, sql = compiled
    models = {uid.removeprefix("model.dc_taxi.") for uid in sql if uid.startswith("model.")}
    assert {"stg_dc_taxi__trips", "int_trips_validated", "trip_features", "feature_stats"} <= models
    assert any(uid.startswith("test.") for uid in sql)
    assert not sorted(uid for uid, text in sql.items() if not text.strip())


def test_every_compiled_statement_parses_as_athena_sql(compiled):
    _, sql = compiled
    for unique_id, text in sql.items():
        try:
            statements = sqlglot.parse(text, read="athena")
        except sqlglot.errors.ParseError as error:
            pytest.fail(f"{unique_id} is not valid Athena SQL: {error}")
        assert [type(s) for s in statements] == [exp.Select], unique_id


def test_only_trino_functions_are_called(compiled):
    _, sql = compiled
    called = set().union(*(_function_calls(text) for text in sql.values()))
    assert called <= TRINO_FUNCTIONS, f"not checked against Trino: {called - TRINO_FUNCTIONS}"


def test_marts_are_iceberg_tables_in_the_audit_database_under_the_lake(compiled):
    """Write-audit-publish (macros/athena_lake.sql): dbt builds and tests each mart as an
    Iceberg table in `<schema>_audit` at a fresh `<lake_path>/<mart>/<uuid>`; on-run-end
    publishes it as `<schema>.<mart>`. Staging and intermediate stay where they were."""
    dbt, sql = compiled
    nodes = dbt.manifest()["nodes"]
    for name in ("trip_features", "trips_rejected", "feature_stats", "data_quality_summary"):
        node = nodes[f"model.dc_taxi.{name}"]
        config = node["config"]
        assert node["schema"] == "dc_taxi_audit"
        # dbt-athena puts a table at <s3_data_dir>/<table>/<uuid> with `table_unique`.
        assert config["s3_data_dir"] == LAKE_PREFIX
        assert config["s3_data_naming"] == "table_unique"
        assert (config["table_type"], config["format"]) == ("iceberg", "parquet")
        assert config["post-hook"][0]["sql"] == "{{ stage_to_lake() }}"
    # The marts kept per raw file append an incremental build's new files to a copy of the
    # published table; a change of their columns fails instead of altering it.
    for name in ("trip_features", "trips_rejected", "data_quality_summary"):
        config = nodes[f"model.dc_taxi.{name}"]["config"]
        assert config["meta"]["lake_files_by"] == "lake_source_file"
        assert (config["materialized"], config["incremental_strategy"]) == ("incremental", "append")
        assert config["on_schema_change"] == "fail"
        assert "lake_source_file" in _output_columns(sql[f"model.dc_taxi.{name}"])
    assert nodes["model.dc_taxi.feature_stats"]["config"]["materialized"] == "table"
    for name in ("stg_dc_taxi__trips", "int_trips_validated"):
        node = nodes[f"model.dc_taxi.{name}"]
        assert (node["schema"], node["config"]["table_type"]) == ("dc_taxi", "hive")
    assert nodes["model.dc_taxi.trip_features"]["config"]["partitioned_by"] == ["split"]
    assert nodes["model.dc_taxi.trips_rejected"]["config"].get("partitioned_by") is None
    # Athena CTAS needs the partition column last.
    assert _output_columns(sql["model.dc_taxi.trip_features"])[-1] == "split"
    # Every test of a mart reads the audit table, never the published one.
    tested = [
        text for uid, text in sql.items() if uid.startswith("test.") and "trip_features" in text
    ]
    assert tested
    assert all('"dc_taxi"."trip_features"' not in text for text in tested)


def test_public_marts_select_exactly_their_contract_columns(compiled):
    """The marts read outside dbt have enforced contracts (public, a data_type per column).
    dbt checks them against the engine's types as it builds each table; offline, the Athena
    SQL must at least return exactly the contract's columns."""
    dbt, sql = compiled
    nodes = dbt.manifest()["nodes"]
    for name in ("trip_features", "trips_rejected", "feature_stats", "data_quality_summary"):
        node = nodes[f"model.dc_taxi.{name}"]
        assert node["config"]["contract"]["enforced"] is True
        assert node["access"] == "public"
        assert all(column["data_type"] for column in node["columns"].values())
        assert sorted(_output_columns(sql[node["unique_id"]])) == sorted(node["columns"]), name


def _output_columns(sql: str) -> list[str]:
    """Column names a model returns, following `select * from <cte>` through its CTEs."""
    query = sqlglot.parse_one(sql, read="athena")
    ctes = {cte.alias: cte.this for cte in query.find_all(exp.CTE)}
    while query.named_selects == ["*"]:
        source = query.args.get("from_") or query.args.get("from")
        query = ctes[source.this.name]
    return query.named_selects


def test_the_lake_must_be_on_s3(tmp_path):
    """Readers find the marts at <lake_path>/<mart>: on Athena that has to be an s3:// prefix."""
    result = OfflineDbt(tmp_path).compile(dbt_vars={"lake_path": "data/lake"})
    assert result.returncode != 0
    assert "the lake_path var must be an s3:// prefix" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("dbt_vars", "env"),
    [
        pytest.param({"lake_path": f"{RAW_PREFIX}/lake"}, {}, id="lake-inside-raw"),
        pytest.param(
            {}, {"DBT_ATHENA_S3_DATA_DIR": "s3a://dc-taxi-offline/"}, id="data-dir-above-raw"
        ),
    ],
)
def test_an_output_location_overlapping_the_raw_files_stops_the_run(tmp_path, dbt_vars, env):
    """The on-run-start check sees the profile and every mart (the rules: test_macros.py)."""
    result = OfflineDbt(tmp_path).compile(dbt_vars=dbt_vars, env=env)
    assert result.returncode != 0
    assert "overlaps the raw prefix" in result.output
    assert "dbt-athena deletes table locations" in result.output


@pytest.mark.parametrize(
    ("dbt_vars", "message"),
    [
        ({"raw_path": "data/raw"}, "the raw_path var must be an s3:// prefix"),
        ({"table_type": "delta"}, "the table_type var must be 'hive' or 'iceberg'"),
    ],
)
def test_wrong_settings_fail_with_the_fix(tmp_path, dbt_vars, message):
    result = OfflineDbt(tmp_path).compile(dbt_vars=dbt_vars)
    assert result.returncode != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_profile_reads_every_setting_from_the_environment(tmp_path):
    env = {
        "DBT_ATHENA_REGION": "eu-west-1",
        "DBT_ATHENA_SCHEMA": "taxi_prod",
        "DBT_ATHENA_DATABASE": "other_catalog",
        "DBT_ATHENA_WORK_GROUP": "analytics",
        "DBT_ATHENA_THREADS": "7",
        "DBT_ATHENA_NUM_RETRIES": "9",
        "DBT_ATHENA_S3_DATA_NAMING": "schema_table",
        "DBT_ATHENA_S3_TMP_TABLE_DIR": "s3://dc-taxi-offline-tables/tmp/",
        "AWS_PROFILE": "taxi",
    }
    expected = {
        "region_name": "eu-west-1",
        "schema": "taxi_prod",
        "database": "other_catalog",
        "work_group": "analytics",
        "threads": "7",
        "num_retries": "9",
        "s3_data_naming": "schema_table",
        "s3_tmp_table_dir": "s3://dc-taxi-offline-tables/tmp/",
        "s3_staging_dir": OFFLINE_ENV["DBT_ATHENA_S3_STAGING_DIR"],
        "s3_data_dir": OFFLINE_ENV["DBT_ATHENA_S3_DATA_DIR"],
        "aws_profile_name": "taxi",
    }
    snippets = {name: f"{{{{ target.get('{name}') }}}}" for name in expected}
    assert OfflineDbt(tmp_path).render(snippets, env=env) == expected


def test_profile_defaults(tmp_path):
    snippets = {
        name: f"{{{{ target.get('{name}') }}}}"
        for name in ("region_name", "schema", "database", "work_group", "threads", "num_retries")
    }
    assert OfflineDbt(tmp_path).render(snippets) == {
        "region_name": "us-east-1",
        "schema": "dc_taxi",
        "database": "awsdatacatalog",
        "work_group": "primary",
        "threads": "4",
        "num_retries": "5",
    }


def test_no_secret_in_profiles():
    text = (Path(__file__).resolve().parents[2] / "profiles.yml").read_text()
    for setting in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        assert setting not in text
