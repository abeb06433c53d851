"""Incremental builds on Athena: planned here, built by dbt, recorded here.

On DuckDB the build plans itself (the dbt-duckdb plugin, lakehouse/increment.py). On Athena it
cannot: Athena's SQL sees an object's size only by reading it, and dbt's Jinja cannot reach S3.
So on the athena target `python -m lakehouse athena-build` does the planning around `dbt build`:

1. **Plan.** List `taxi_YYYY_MM.txt` directly under raw_path with size and ETag (S3 listing: no
   object is read); find the published build (the Glue stamp `dbt.invocation_id` of every mart
   kept per raw file) and the raw files it recorded (`<lake>/_builds/<id>/raw_files.json`).
2. **Decide.** *Incremental* when the rules are the published build's (`logic`: the project's
   models, macros, data tests and the output vars), no published raw file changed or went
   away, and every new file is named after every published one: the month-by-month case, in
   which no published line can turn into a `duplicate` (the first file by name keeps a line).
   Otherwise *full*, saying why: a re-delivered or removed month, or a new file named before a
   published one, is a full build on Athena. (Its marts would need Iceberg row deletes, which
   Athena writes as merge-on-read delete files that this lake's readers do not apply.)
3. **Build.** `dbt build --target athena --vars {..., lake_increment: {...}}`: the raw source
   reads only the new files, the published trip keys are carried for the duplicate rule, and
   the marts kept per raw file append to copies of the published tables
   (dbt_project/macros/athena_lake.sql). Write-audit-publish is unchanged.
4. **Record.** Once dbt published this build (the Glue stamp is its invocation id), write its
   raw_files.json, run_results.json and manifest.json under `<lake>/_builds/<invocation id>/`:
   the next plan, the data-quality page and MLflow lineage read them there. A build published
   but not recorded (killed in between) makes the next build a full one.

The result equals a full build of the same raw files, as on DuckDB; what is read is printed
before the build (`--dry-run` prints only that): the raw bytes of the new files, and the
published trip keys' bytes Athena scans for the duplicate rule.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyiceberg.catalog import Catalog

from lakehouse.build_artifacts import record_build
from lakehouse.catalog import INVOCATION_PROPERTY, NAMESPACE, LakeError, lake_uri
from lakehouse.increment import (
    FULL,
    INCREMENTAL,
    RAW_FILE_PATTERN,
    Increment,
    RawFile,
    file_changes,
    full_build_reason,
    project_logic,
    published_record,
    record_increment,
)
from scripts.dbt_subprocess import dbt_executable
from scripts.upload_raw import parse_s3_uri

KEY_COLUMNS = ("trip_key", "lake_source_file")
PLAN_VAR = "lake_increment"


@dataclass(frozen=True)
class ProjectRules:
    """What the plan needs from the dbt project, as dbt resolves it (`project_rules`)."""

    logic: str  # checksum of the rules (lakehouse.increment.project_logic)
    marts_by_raw_file: tuple[str, ...]  # meta.lake_files_by: lake_marts_by_raw_file()
    trip_key_marts: tuple[str, ...]  # one row per raw line: lake_trip_key_marts()


def list_s3_raw_files(raw_prefix: str) -> list[RawFile]:
    """The `taxi_YYYY_MM.txt` objects directly under `raw_prefix`, by name, with size, time and
    ETag (a listing: nothing is downloaded). S3 settings come from the AWS environment."""
    import boto3

    bucket, key = parse_s3_uri(raw_prefix)
    prefix = f"{key}/" if key else ""
    pages = (
        boto3.client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    )
    files = []
    for page in pages:
        for entry in page.get("Contents", []):
            name = entry["Key"][len(prefix) :]
            if RAW_FILE_PATTERN.fullmatch(name):
                modified_ns = int(entry["LastModified"].timestamp() * 1_000_000_000)
                etag = entry["ETag"].strip('"')
                files.append(RawFile(name, entry["Size"], modified_ns, sha256="", etag=etag))
    return sorted(files, key=lambda f: f.name)


def published_build(catalog: Catalog, marts: Sequence[str]) -> tuple[str | None, str]:
    """The build whose marts kept per raw file are published now, or None and why not."""
    stamps = {}
    for mart in marts:
        try:
            entry = catalog.glue.get_table(DatabaseName=NAMESPACE, Name=mart)["Table"]
        except catalog.glue.exceptions.EntityNotFoundException:
            return None, f"{NAMESPACE}.{mart} is not published yet"
        stamps[mart] = entry.get("Parameters", {}).get(INVOCATION_PROPERTY)
    if len(set(stamps.values())) != 1 or None in stamps.values():
        return None, f"the published marts are from different builds ({stamps})"
    return stamps[marts[0]], ""


def plan_athena_build(
    catalog: Catalog, lake_root: str, raw_prefix: str, rules: ProjectRules, full_refresh: bool
) -> Increment:
    """Decide how an Athena build reads the raw files (see the module docstring)."""
    files = list_s3_raw_files(raw_prefix)
    empty = [f.name for f in files if f.size == 0]
    if empty:
        raise LakeError(
            f"raw file(s) {', '.join(empty)} under {raw_prefix} are empty (0 bytes): Athena would "
            "skip them without a word — upload them again (`python -m scripts.upload_raw`)"
        )
    if not files:
        raise LakeError(
            f"no raw files matching '{raw_prefix}/taxi_*.txt' — upload them with "
            f"`python -m scripts.upload_raw --src data/raw --dest {raw_prefix}`"
        )
    published, why_not = published_build(catalog, rules.marts_by_raw_file)
    logic = rules.logic
    record, known = published_record(lake_root, published)
    added, changed, removed = file_changes(known, files)

    def full(reason: str) -> Increment:
        names = [f.name for f in files]
        return Increment(FULL, reason, logic, files, published, added, changed, removed, names)

    reason = full_build_reason(full_refresh, published, record, logic, unpublished=why_not)
    if reason:
        return full(reason)
    if changed or removed:
        what = ", ".join([*(f"{n} changed" for n in changed), *(f"{n} removed" for n in removed)])
        return full(f"{what}: on Athena a published month is replaced by a full build")
    last = max((f.name for f in known), default="")
    earlier = [name for name in added if name < last]
    if earlier:
        return full(
            f"{', '.join(earlier)} named before the published {last}: its lines may turn "
            "published ones into duplicates"
        )
    return Increment(
        INCREMENTAL,
        "raw files new since the published build",
        logic,
        files,
        published,
        added=added,
        reread=added,
    )


def plan_var(increment: Increment) -> dict:
    """The `lake_increment` var dbt reads (macros/athena_lake.sql: athena_lake_increment)."""
    if increment.mode == FULL:
        return {"mode": FULL}
    return {
        "mode": INCREMENTAL,
        "files": list(increment.reread),
        "published_build": increment.published_build,
    }


@dataclass(frozen=True)
class ScanEstimate:
    """What an Athena build reads: raw text of the files it parses, and (incremental) the
    published trip keys it carries for the duplicate rule."""

    raw_bytes: int
    key_bytes: int

    def summary(self) -> str:
        mib = 1 << 20
        return (
            f"Athena scans about {(self.raw_bytes + self.key_bytes) / mib:,.1f} MiB: "
            f"{self.raw_bytes / mib:,.1f} MiB of raw text, "
            f"{self.key_bytes / mib:,.1f} MiB of published trip keys"
        )


def scan_estimate(
    catalog: Catalog, increment: Increment, trip_key_marts: Sequence[str]
) -> ScanEstimate:
    """Raw bytes of the files the build reads, and the stored size of the published
    `trip_key` and `lake_source_file` columns it carries (from the Iceberg manifests)."""
    sizes = {f.name: f.size for f in increment.files}
    raw_bytes = sum(sizes[name] for name in increment.reread)
    if increment.mode == FULL:
        return ScanEstimate(raw_bytes, 0)
    key_bytes = 0
    for mart in trip_key_marts:
        table = catalog.load_table((NAMESPACE, mart))
        schema = table.schema()  # (the DuckDB lake keeps lake_source_file as a folder)
        field_ids = {
            schema.find_field(name).field_id for name in KEY_COLUMNS if name in schema.column_names
        }
        for task in table.scan().plan_files():
            sizes_by_field = task.file.column_sizes or {}
            key_bytes += sum(sizes_by_field.get(field_id, 0) for field_id in field_ids)
    return ScanEstimate(raw_bytes, key_bytes)


def project_rules(
    project_dir: Path, dbt_vars: Mapping[str, object], env: Mapping[str, str]
) -> ProjectRules:
    """The rules' checksum and the marts the plan looks at, as dbt resolves them for the
    athena target (an offline `dbt compile --inline`: nothing is sent to AWS)."""
    inline = (
        "{{ tojson({'vars': lake_output_vars(), 'marts': lake_marts_by_raw_file(), "
        "'key_marts': lake_trip_key_marts()}) }}"
    )
    command = [
        dbt_executable(),
        "compile",
        "--no-populate-cache",
        "--quiet",
        "--output",
        "json",
        "--target",
        "athena",
        "--project-dir",
        str(project_dir),
        "--vars",
        json.dumps(dict(dbt_vars)),
        "--inline",
        inline,
    ]
    done = subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise LakeError(
            f"dbt could not read the project's vars for the athena target: {done.stdout[-2000:]}"
        )
    compiled = json.loads(json.loads(done.stdout[done.stdout.index("{") :])["compiled"])
    return ProjectRules(
        logic=project_logic(str(project_dir), compiled["vars"]),
        marts_by_raw_file=tuple(compiled["marts"]),
        trip_key_marts=tuple(compiled["key_marts"]),
    )


def target_path(project_dir: Path, env: Mapping[str, str]) -> Path:
    """Where dbt writes run_results.json and manifest.json."""
    configured = env.get("DBT_TARGET_PATH")
    return Path(configured) if configured else project_dir / "target"


def record_published(
    catalog: Catalog, lake_root: str, increment: Increment, target: Path, marts: Sequence[str]
) -> str | None:
    """Record the build dbt just ran (run_results.json's invocation id) if it is the one
    published now: raw_files.json and its dbt artifacts. Where they went, or None."""
    run_results = json.loads((target / "run_results.json").read_text())
    invocation = run_results.get("metadata", {}).get("invocation_id")
    published, _ = published_build(catalog, marts)
    if not invocation or invocation != published:
        return None
    record_increment(lake_root, invocation, increment)
    return record_build(lake_root, invocation, run_results, target / "manifest.json")


def run_athena_build(
    lake: str,
    raw: str,
    catalog: Catalog,
    dbt_vars: Mapping[str, object],
    dbt_args: Sequence[str],
    full_refresh: bool,
    dry_run: bool,
    project_dir: Path,
) -> int:
    """Plan, print, build and record; dbt's exit status."""
    lake_root = lake_uri(lake)
    env = dict(os.environ)
    all_vars = {**dbt_vars, "raw_path": raw, "lake_path": lake_root}
    rules = project_rules(project_dir, all_vars, env)
    increment = plan_athena_build(catalog, lake_root, raw.rstrip("/"), rules, full_refresh)
    print(f"lake: {increment.summary()}")
    print(f"lake: {scan_estimate(catalog, increment, rules.trip_key_marts).summary()}")
    all_vars[PLAN_VAR] = plan_var(increment)
    if dry_run:
        print(f"lake: --vars '{json.dumps(all_vars)}'")
        return 0
    command = [dbt_executable(), "build", "--target", "athena", "--project-dir", str(project_dir)]
    command += ["--vars", json.dumps(all_vars), *(["--full-refresh"] if full_refresh else [])]
    returncode = subprocess.run([*command, *dbt_args], env=env).returncode
    if returncode == 0:
        target = target_path(project_dir, env)
        where = record_published(catalog, lake_root, increment, target, rules.marts_by_raw_file)
        if where is None:
            print("lake: the build did not publish; nothing recorded", file=sys.stderr)
            return 1
        print(f"lake: recorded the build's raw files and dbt artifacts in {where}")
    return returncode
