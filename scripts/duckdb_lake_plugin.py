"""dbt-duckdb plugin: local folders, and the lake's write-audit-publish in Python.

Registers scalar functions the dbt macros in ``macros/lake.sql`` call:

- ``lake_ensure_dir(path)``: creates a local folder and its parents (DuckDB's ``COPY ... TO``
  creates only the last folder); does nothing for object-store URLs.
- ``raw_folder_problems(folder)``: the ``taxi_*.txt`` entries DuckDB's glob skips silently (a
  broken symlink, a folder, an unreadable file), one line each; the raw-source hook fails on them.
- ``lake_begin(lake_root, invocation_id)``: on-run-start; remembers which build is published.
- ``lake_plan(lake_root, invocation_id, settings_json)``: on-run-start (raw source); decides
  whether the build is full or incremental and which raw files it reads
  (``lakehouse/increment.py``); ``lake_reread(invocation_id, files_json)`` then fixes the raw
  files an incremental build re-reads.
- ``lake_stage(lake_root, mart, invocation_id, data_folder, schema_file, partition_by,
  files_by)``: post-hook of each mart; registers the Parquet files DuckDB just wrote (with the
  published files an incremental build keeps) as the mart's snapshot on the build's audit
  branch and returns them as JSON (the relation the tests then read).
- ``lake_record_build(lake_root, invocation_id, run_results_json, manifest_path)``: on-run-end,
  before publishing; writes the build's run results, manifest and raw files read into the
  lake (``lakehouse/build_artifacts.py``, ``lakehouse/increment.py``) and returns where.
- ``lake_publish(lake_root, invocation_id, marts_json)``: on-run-end; publishes every staged
  mart in one catalog transaction, or fails naming the other build that published meanwhile.
- ``lake_table_files(lake_root, table)``: on-run-start; the current data files of a lake table
  written outside dbt (``fare_predictions``), as JSON, for the ``lake`` source's view.

It also creates the DuckDB file's folder before dbt connects. Enabled in ``profiles.yml``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import threading
from pathlib import Path

from dbt.adapters.duckdb.plugins import BasePlugin

from lakehouse.build_artifacts import record_build
from lakehouse.catalog import (
    REMOTE_SCHEMES,
    LakeError,
    default_catalog_uri,
    describe_catalog,
    local_path,
    open_catalog,
    retry_locked,
)
from lakehouse.increment import (
    INCREMENTAL,
    Increment,
    plan_increment,
    project_logic,
    record_increment,
)
from lakehouse.predictions import TABLE, predictions_table
from lakehouse.publish import (
    current_snapshots,
    ensure_namespace,
    main_data_files,
    publish_build,
    stage_mart,
)


def raw_folder_problems(folder: str) -> str:
    """`taxi_*.txt` entries of a local raw folder that DuckDB's glob skips without a word (a
    broken symlink, a folder) or cannot read: one line each with the fix; '' when none."""
    if folder.startswith(REMOTE_SCHEMES) or not os.path.isdir(folder):
        return ""
    problems = []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if not fnmatch.fnmatchcase(entry.name, "taxi_*.txt"):
            continue
        if entry.is_symlink() and not os.path.exists(entry.path):
            problems.append(
                f"raw file '{entry.name}' is a broken symlink (to {os.readlink(entry.path)}) — "
                "mount or restore what it points at, or delete the link"
            )
        elif not entry.is_file():
            problems.append(f"raw file '{entry.name}' is not a file — move it out of {folder}")
        elif not os.access(entry.path, os.R_OK):
            problems.append(
                f"raw file '{entry.name}' cannot be read — give the user running dbt read "
                "permission on it"
            )
    return "\n".join(problems)


def lake_ensure_dir(path: str) -> str:
    """Create ``path`` (and parents) unless it is an object-store URL; return it unchanged."""
    if not path.startswith(REMOTE_SCHEMES):
        os.makedirs(path.removeprefix("file://"), exist_ok=True)
    return path


class Plugin(BasePlugin):
    def initialize(self, plugin_config):
        # What was published when each build (dbt invocation) in this process started.
        self.bases: dict[str, dict[str, int | None]] = {}
        # How each build reads the raw files (lakehouse/increment.py).
        self.increments: dict[str, Increment] = {}
        self.catalogs: dict[str, object] = {}
        self.lock = threading.Lock()

    def update_connection_config(self, creds, config):
        path = creds.path
        if path and path != ":memory:" and not path.startswith(("md:", "motherduck:")):
            lake_ensure_dir(os.path.dirname(os.path.abspath(path)))

    def catalog(self, lake_root: str):
        with self.lock:
            if lake_root not in self.catalogs:
                self.catalogs[lake_root] = open_catalog(lake_root)
            return self.catalogs[lake_root]

    def lake_begin(self, lake_root: str, invocation_id: str) -> str:
        catalog = self.catalog(lake_root)
        retry_locked(lambda: ensure_namespace(catalog))
        # The raw-source hook may have begun the build already (to plan it): keep its base.
        base = self.bases.setdefault(invocation_id, current_snapshots(catalog, lake_root))
        published = sum(snapshot is not None for snapshot in base.values())
        return (
            f"catalog {describe_catalog(default_catalog_uri(lake_root))}, "
            f"{published} mart(s) published"
        )

    def lake_plan(self, lake_root: str, invocation_id: str, settings_json: str) -> str:
        """on-run-start (raw source): full or incremental, and what the build reads; JSON."""
        settings = json.loads(settings_json)
        self.lake_begin(lake_root, invocation_id)
        increment = plan_increment(
            self.catalog(lake_root),
            lake_root,
            self.bases[invocation_id],
            settings["raw_folder"],
            project_logic(settings["project_dir"], settings["output_vars"]),
            settings["marts"],
            settings["column"],
            settings["full_refresh"],
        )
        self.increments[invocation_id] = increment
        return json.dumps(
            {
                "mode": increment.mode,
                "summary": increment.summary(),
                "reread": increment.reread,
                "changed": increment.changed,
                "removed": increment.removed,
                "published_files": {
                    mart: {
                        source: [local_path(p) for p in paths] for source, paths in files.items()
                    }
                    for mart, files in increment.published_files.items()
                },
            }
        )

    def lake_reread(self, invocation_id: str, files_json: str) -> str:
        """on-run-start (raw source): the raw files an incremental build re-reads, final."""
        increment = self.increments[invocation_id]
        increment.reread = sorted(json.loads(files_json))
        return increment.summary()

    def lake_stage(
        self,
        lake_root: str,
        mart: str,
        invocation_id: str,
        data_folder: str,
        schema_file: str,
        partition_by: str,
        files_by: str,
    ) -> str:
        if invocation_id not in self.bases:
            raise LakeError(
                "the on-run-start hook did not finish for this build (see its error above) — "
                "nothing was staged"
            )
        catalog = self.catalog(lake_root)
        increment = self.increments.get(invocation_id)
        keep = None
        if files_by and increment is not None and increment.mode == INCREMENTAL:
            replaced = increment.replaced
            keep = [
                path
                for source, paths in increment.published_files[mart].items()
                if source not in replaced
                for path in paths
            ]
        with self.lock:  # one catalog commit at a time from this build's threads
            snapshot_id, files = retry_locked(
                lambda: stage_mart(
                    catalog,
                    lake_root,
                    mart,
                    invocation_id,
                    data_folder,
                    schema_file,
                    partition_by or None,
                    keep,
                )
            )
        kept = set(keep or ())
        return json.dumps(
            {
                "snapshot_id": snapshot_id,
                "files": [local_path(f) for f in files],
                "new": [local_path(f) for f in files if f not in kept],
            }
        )

    def lake_publish(self, lake_root: str, invocation_id: str, marts_json: str) -> str:
        base = self.bases.get(invocation_id)
        if base is None:
            raise LakeError(
                "the on-run-start hook did not finish for this build — nothing was published"
            )
        published = publish_build(
            self.catalog(lake_root), lake_root, invocation_id, base, json.loads(marts_json)
        )
        return ", ".join(f"{name} snapshot {sid}" for name, sid in published.items())

    def lake_record_build(
        self, lake_root: str, invocation_id: str, run_results_json: str, manifest: str
    ) -> str:
        if invocation_id not in self.bases:
            raise LakeError(
                "the on-run-start hook did not finish for this build — nothing was published"
            )
        increment = self.increments.get(invocation_id)
        if increment is not None:
            record_increment(lake_root, invocation_id, increment)
        return record_build(lake_root, invocation_id, json.loads(run_results_json), Path(manifest))

    def lake_table_files(self, lake_root: str, table: str) -> str:
        """The current published data files of a lake table that dbt does not build (JSON list
        of paths; empty before it exists): what the `lake` source's view reads."""
        if table != TABLE:
            raise LakeError(f"{table} is not a lake source table (known: {TABLE})")
        found = predictions_table(self.catalog(lake_root), lake_root)
        files = main_data_files(found) if found is not None else []
        return json.dumps(sorted(local_path(data_file.file_path) for data_file in files))

    def configure_connection(self, conn):
        def register(name, function, arity):
            conn.create_function(name, function, ["VARCHAR"] * arity, "VARCHAR", side_effects=True)

        register("lake_ensure_dir", lake_ensure_dir, 1)
        register("raw_folder_problems", raw_folder_problems, 1)
        register("lake_begin", self.lake_begin, 2)
        register("lake_plan", self.lake_plan, 3)
        register("lake_reread", self.lake_reread, 2)
        register("lake_stage", self.lake_stage, 7)
        register("lake_record_build", self.lake_record_build, 4)
        register("lake_publish", self.lake_publish, 3)
        register("lake_table_files", self.lake_table_files, 2)
