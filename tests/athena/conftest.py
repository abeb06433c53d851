"""Run the real dbt CLI against the `athena` target offline: compile and render, never connect.

dbt-athena only reaches AWS when a query runs, so `dbt compile --no-populate-cache` with
dummy credentials renders every model, test and macro exactly as a real run would.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.dbt_subprocess import dbt_env, dbt_executable
from tests.conftest import REPO_ROOT, DbtResult

RAW_PREFIX = "s3://dc-taxi-offline/raw"
LAKE_PREFIX = "s3://dc-taxi-offline/lake"
# Dummy settings: nothing here is ever sent anywhere.
OFFLINE_ENV = {
    "AWS_ACCESS_KEY_ID": "offline-test-key",
    "AWS_SECRET_ACCESS_KEY": "offline-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "DBT_ATHENA_S3_STAGING_DIR": "s3://dc-taxi-offline-results/athena/",
    "DBT_ATHENA_S3_DATA_DIR": "s3://dc-taxi-offline-tables/dbt/",
}
_UNSET = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "DBT_ATHENA_REGION",
    "DBT_ATHENA_S3_TMP_TABLE_DIR",
    "DBT_ATHENA_S3_DATA_NAMING",
    "DBT_ATHENA_SCHEMA",
    "DBT_ATHENA_DATABASE",
    "DBT_TARGET",
)


@dataclass
class OfflineDbt:
    """A throwaway dbt target dir; runs dbt with the offline Athena settings."""

    root: Path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {name: value for name, value in os.environ.items() if name not in _UNSET}
        return dbt_env(self.root, base={**base, **OFFLINE_ENV}, **(extra or {}))

    def dbt(
        self,
        *args: str,
        target: str = "athena",
        dbt_vars: dict | None = None,
        env: dict[str, str] | None = None,
    ) -> DbtResult:
        dbt_vars = {"raw_path": RAW_PREFIX, "lake_path": LAKE_PREFIX, **(dbt_vars or {})}
        command = [
            dbt_executable(),
            *args,
            "--target",
            target,
            "--vars",
            json.dumps(dbt_vars),
        ]
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=600,
        )
        return DbtResult(completed.returncode, completed.stdout + completed.stderr)

    def compile(self, **kwargs) -> DbtResult:
        return self.dbt("compile", "--no-populate-cache", **kwargs)

    def render(
        self,
        snippets: dict[str, str],
        target: str = "athena",
        env: dict[str, str] | None = None,
        dbt_vars: dict | None = None,
    ) -> dict[str, str]:
        """Render Jinja snippets (macro calls) in one `dbt compile --inline`; name -> SQL."""
        marker = "-- @@snippet "
        inline = "\n".join(f"{marker}{name}\n{jinja}" for name, jinja in snippets.items())
        result = self.dbt(
            "compile",
            "--no-populate-cache",
            "--quiet",
            "--output",
            "json",
            "--inline",
            inline,
            target=target,
            env=env,
            dbt_vars=dbt_vars,
        )
        assert result.returncode == 0, result.output[-3000:]
        compiled = json.loads(result.output[result.output.index("{") :])["compiled"]
        rendered = {}
        for chunk in compiled.split(marker)[1:]:
            name, _, sql = chunk.partition("\n")
            rendered[name] = sql.strip()
        assert rendered.keys() == snippets.keys()
        return rendered

    def manifest(self) -> dict:
        return json.loads((self.root / "dbt_target" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def offline_dbt(tmp_path_factory) -> OfflineDbt:
    return OfflineDbt(tmp_path_factory.mktemp("athena_offline"))


# Every dispatched macro with an Athena (or Trino default) branch, and the Athena-only DDL.
MACRO_SNIPPETS = {
    "split_line": "{{ split_line('raw_line') }}",
    "array_length": "{{ array_length('raw_fields') }}",
    "array_element": "{{ array_element('raw_fields', 27) }}",
    "matches_pattern": "{{ matches_pattern('x', '[0-9]+') }}",
    "try_cast_number": "{{ try_cast_number('x') }}",
    "parse_trip_timestamp": "{{ parse_trip_timestamp('x') }}",
    "iso_day_of_week": "{{ iso_day_of_week('ts') }}",
    "md5_hex": "{{ md5_hex('raw_line') }}",
    "split_bucket": "{{ split_bucket('trip_key') }}",
    # The lake's write-audit-publish (macros/athena_lake.sql): the hooks render nothing.
    "begin_lake_build": "{{ begin_lake_build() }}",
    "stage_to_lake": "{{ stage_to_lake() }}",
    "publish_lake": "{{ publish_lake([]) }}",
    "lake_first_publish": (
        "{{ athena_lake_rename_sql(athena_lake_relation('trip_features', audit=true), "
        "athena_lake_relation('trip_features')) }}"
    ),
    "lake_audit_schema": "{{ athena_lake_audit_schema() }}",
    "declare_raw_source": "{{ declare_raw_source() }}",
    "declare_lake_sources": "{{ declare_lake_sources() }}",
    "raw_schema": "{{ athena_create_raw_schema(raw_source_relation()) }}",
    "raw_lines_table": (
        "{{ athena_create_raw_lines_table("
        "raw_source_relation().incorporate(path={'identifier': 'trip_lines_text'}), "
        "'s3://dc-taxi/raw') }}"
    ),
    "raw_source_view": (
        "{% set view = raw_source_relation() %}"
        "{{ athena_create_raw_source_view("
        "view, view.incorporate(path={'identifier': 'trip_lines_text'}), \"s3://dc-taxi/it's\") }}"
    ),
}


@pytest.fixture(scope="session")
def athena_macros(tmp_path_factory) -> dict[str, str]:
    """MACRO_SNIPPETS rendered for the athena target."""
    return OfflineDbt(tmp_path_factory.mktemp("athena_macros")).render(MACRO_SNIPPETS)
