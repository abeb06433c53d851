"""The rejection reasons the data-quality page lists, and their VACUUM principles, come from
the dbt project (`meta.reasons` of trips_rejected.rejection_reason), read from the manifest of
the build the page shows; reports.quality.REASONS is only the fallback for older builds."""

from __future__ import annotations

import json
import subprocess

from reports.dbt_artifacts import dbt_run_of
from reports.quality import REASONS, reason_principles
from scripts.dbt_subprocess import dbt_env, dbt_executable

RESULTS = {
    "args": {"which": "build"},
    "metadata": {"invocation_id": "x"},
    "results": [],
}


def manifest_with(reasons: list[dict]) -> dict:
    column = {"name": "rejection_reason", "meta": {"reasons": reasons}}
    return {"nodes": {"model.dc_taxi.trips_rejected": {"columns": {"rejection_reason": column}}}}


def test_the_manifest_decides_the_reasons_and_their_order():
    reasons = [
        {"reason": "pickup_time_out_of_range", "principle": "accurate"},
        {"reason": "a_new_rule", "principle": "consistent"},
    ]
    run = dbt_run_of(RESULTS, manifest_with(reasons))
    assert reason_principles(run) == {
        "pickup_time_out_of_range": "accurate",
        "a_new_rule": "consistent",
    }
    assert list(reason_principles(run)) == ["pickup_time_out_of_range", "a_new_rule"]


def test_a_build_without_them_in_its_manifest_falls_back():
    assert reason_principles(dbt_run_of(RESULTS, {})) == REASONS
    assert reason_principles(None) == REASONS


def test_the_project_defines_every_reason_the_rules_can_give(tmp_path):
    """`dbt parse` of the project: its meta.reasons are the accepted_values of the column, in
    the fallback's order, so older builds read the same way."""
    result = subprocess.run(
        [dbt_executable(), "parse", "--quiet"], env=dbt_env(tmp_path), capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    manifest = json.loads((tmp_path / "dbt_target" / "manifest.json").read_text())
    assert reason_principles(dbt_run_of(RESULTS, manifest)) == REASONS
    assert list(reason_principles(dbt_run_of(RESULTS, manifest))) == list(REASONS)
    accepted = next(
        node["test_metadata"]["kwargs"]["values"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and node.get("test_metadata", {}).get("name") == "accepted_values"
        and node.get("column_name") == "rejection_reason"
    )
    assert accepted == list(REASONS)
