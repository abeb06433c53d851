"""The dbt test results of a build: from the artifacts it recorded in the lake
(`lakehouse.build_artifacts`), or from a dbt target folder's `run_results.json` and
`manifest.json` (whatever dbt command ran there last)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.build_artifacts import MANIFEST, RUN_RESULTS, read_artifact

if TYPE_CHECKING:
    from lakehouse.builds import PinnedBuild

# Which VACUUM principle (or other check) each kind of dbt test stands for: only for a build
# whose manifest predates the tests' own `meta: {vacuum_principle: ...}` (dbt_project/data-tests/
# generic/ and dbt_project.yml's `data_tests:` declare it now).
PRINCIPLE_OF_TEST = {
    "not_null": "valid",
    "accepted_values": "valid",
    "expression_is_true": "valid",
    "every_file_has_header": "valid",
    "values_between": "accurate",
    "total_amount_consistent": "consistent",
    "matches_timestamp_format": "uniform",
    "unique": "unified",
    "unique_combination_of_columns": "unified",
    "assert_every_month_file_contributes_rows": "unified",
    "assert_raw_rows_reconcile": "reconciliation",
    "assert_every_test_trip_scored_by_each_model_version": "reconciliation",
    "split_fractions_within_tolerance": "split",
    "splits_are_representative": "split",
    "every_split_has_rows": "split",
}
PRINCIPLES = (
    "valid",
    "accurate",
    "consistent",
    "uniform",
    "unified",
    "reconciliation",
    "split",
    "unit test",
    "other",
)
STATUS_KIND = {"pass": "ok", "success": "ok", "warn": "warn", "skipped": "warn"}
# Only these commands execute tests; `dbt docs generate` or `dbt compile` list every test in
# run_results.json as "success" without running it.
TESTING_COMMANDS = ("build", "test")
REJECTED_MODEL = "model.dc_taxi.trips_rejected"


@dataclass(frozen=True)
class DbtTest:
    """One dbt data test or unit test and how it ended."""

    unique_id: str
    name: str
    kind: str
    model: str
    column: str
    principle: str
    status: str
    failures: int | None
    message: str

    @property
    def status_kind(self) -> str:
        """ok, warn or fail: how the report colours it."""
        return STATUS_KIND.get(self.status, "fail")


@dataclass(frozen=True)
class DbtRun:
    """What `run_results.json` says about the last dbt command."""

    command: str
    invocation_id: str
    generated_at: str
    dbt_version: str
    tests: tuple[DbtTest, ...]
    # Rejection reason -> VACUUM principle, in the order the rules apply: the `meta.reasons`
    # of trips_rejected.rejection_reason in the manifest (empty for a build from before it).
    rejection_reasons: dict[str, str] = field(default_factory=dict)


def principle(kind: str, model: str, resource_type: str, meta: dict) -> str:
    """The VACUUM principle a test checks: its dbt `meta.vacuum_principle`, or for an older
    build's node without one, by its kind (range checks on staging columns are about units)."""
    if resource_type == "unit_test":
        return "unit test"
    if meta.get("vacuum_principle") in PRINCIPLES:
        return meta["vacuum_principle"]
    if kind == "values_between" and model.startswith("stg_"):
        return "uniform"
    return PRINCIPLE_OF_TEST.get(kind, "other")


def describe_test(result: dict, node: dict) -> DbtTest:
    """One entry of run_results.json, described with its manifest node (if there is one)."""
    unique_id = result["unique_id"]
    resource_type, _, name = unique_id.split(".")[:3]
    if resource_type == "unit_test":  # unit_test.<package>.<model>.<name>
        name = node.get("name") or unique_id.split(".")[-1]
    kind = (node.get("test_metadata") or {}).get("name") or name
    attached = node.get("attached_node") or node.get("model") or ""
    model = attached.split(".")[-1] if attached else ""
    return DbtTest(
        unique_id=unique_id,
        name=name,
        kind=kind,
        model=model,
        column=node.get("column_name") or "",
        principle=principle(
            kind, model, resource_type, (node.get("config") or {}).get("meta") or {}
        ),
        status=result["status"],
        failures=result.get("failures"),
        message=result.get("message") or "",
    )


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_dbt_run(target: Path) -> DbtRun | None:
    """The tests of the last dbt command in `target`, or None when it wrote no run_results.

    `tests` is empty when that command ran none (e.g. `dbt docs generate` after the build).
    """
    return dbt_run_of(read_json(target / "run_results.json"), read_json(target / "manifest.json"))


def load_build_dbt_run(build: PinnedBuild) -> DbtRun | None:
    """The tests of the dbt build that published `build`, from the artifacts it recorded in
    the lake; None for a build that recorded none (older, or built on Athena)."""
    results = read_artifact(build.lake_root, build.invocation_id, RUN_RESULTS)
    if results is None:
        return None
    manifest = read_artifact(build.lake_root, build.invocation_id, MANIFEST) or {}
    return dbt_run_of(results, manifest)


def dbt_run_of(results: dict, manifest: dict) -> DbtRun | None:
    """A dbt command's tests from its run_results and manifest documents (None: no results)."""
    if not results:
        return None
    args = results.get("args", {})
    nodes = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    tests = [
        describe_test(result, nodes.get(result["unique_id"], {}))
        for result in results.get("results", [])
        if result["unique_id"].split(".")[0] in ("test", "unit_test")
        and args.get("which") in TESTING_COMMANDS
    ]
    tests.sort(key=lambda t: (PRINCIPLES.index(t.principle), t.model, t.name))
    metadata = results.get("metadata", {})
    return DbtRun(
        command=args.get("invocation_command") or f"dbt {args.get('which', '?')}",
        invocation_id=metadata.get("invocation_id", ""),
        generated_at=metadata.get("generated_at", ""),
        dbt_version=metadata.get("dbt_version", ""),
        tests=tuple(tests),
        rejection_reasons=rejection_reasons_of(manifest),
    )


def rejection_reasons_of(manifest: dict) -> dict[str, str]:
    """{reason: VACUUM principle} in rule order, from the rejection_reason column's meta."""
    node = manifest.get("nodes", {}).get(REJECTED_MODEL, {})
    column = node.get("columns", {}).get("rejection_reason", {})
    reasons = column.get("meta", {}).get("reasons")  # dbt copies the column's config.meta here
    return {entry["reason"]: entry["principle"] for entry in reasons or []}
