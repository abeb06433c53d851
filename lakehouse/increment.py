"""Incremental builds: which raw files a build must (re)read, and which published rows it keeps.

A raw file is identified by its name, size and SHA-256 checksum (the checksum is computed again
only when the size or modification time differ from the published build's record). Every
published build records its raw files in `<lake>/_builds/<invocation id>/raw_files.json`; the
next build compares the raw folder with that record:

- **full** (every file read, every mart rewritten): `--full-refresh`, nothing published yet, a
  published build without a record, or rules that changed (the output vars or the project's
  models, macros and tests: `logic`, a checksum of them);
- **incremental**: only new and changed files are read, plus every unchanged file that shares
  a `trip_key` with one of them named before it, or with what such a changed or removed file
  held (its rows may turn into, or stop being, a `duplicate`). The marts that hold rows per
  raw file keep their files per raw file (`<mart>/data/<build>/mart/<column>=<file>/...`), so
  the build replaces exactly the files of what it re-read and of removed raw files, and keeps
  the rest as published.

The result equals a full rebuild of the same raw files; `tests/lakehouse/test_incremental.py`
checks it row by row.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog

from lakehouse.build_artifacts import read_artifact, write_artifact
from lakehouse.catalog import filesystem_of, is_remote, load_mart
from lakehouse.publish import invocation_of, snapshot_data_files

RAW_FILES = "raw_files.json"
RAW_FILE_PATTERN = re.compile(r"taxi_[0-9]{4}_(0[1-9]|1[0-2])[.]txt")
FULL, INCREMENTAL = "full", "incremental"
# The project folders whose files are rules (dbt_project.yml's model-, macro- and test-paths).
RULE_FOLDERS = ("models", "macros", "data-tests")


@dataclass(frozen=True)
class RawFile:
    name: str
    size: int
    mtime_ns: int
    sha256: str  # "" where the file is known by its S3 ETag (an Athena build's plan)
    etag: str = ""

    @property
    def content_id(self) -> tuple[int, str, str]:
        """What tells one content of the file from another."""
        return (self.size, self.sha256, self.etag)


@dataclass
class Increment:
    """What one build reads and replaces (recorded with the build as raw_files.json)."""

    mode: str  # FULL or INCREMENTAL
    reason: str  # why a full build, or what the increment is
    logic: str  # checksum of the rules this build applies
    files: list[RawFile]
    published_build: str | None = None  # the build this one starts from
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # Raw files whose rows this build writes: all (full), else added + changed + those sharing
    # a trip_key with them (set once the build has looked, `reread`).
    reread: list[str] = field(default_factory=list)
    # Published data files of each per-raw-file mart, by raw file (incremental builds only).
    published_files: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def replaced(self) -> set[str]:
        """Raw files whose published rows this build drops (it writes their new rows, if any)."""
        return set(self.reread) | set(self.removed)

    def record(self) -> dict:
        recorded = asdict(self)
        recorded.pop("published_files")
        recorded["files_sha256"] = files_checksum(self.files)
        return recorded

    def summary(self) -> str:
        if self.mode == FULL:
            return f"full build of {len(self.files)} raw file(s) — {self.reason}"
        parts = [
            f"{len(self.added)} new",
            f"{len(self.changed)} changed",
            f"{len(self.removed)} removed",
        ]
        kept = len(self.files) - len(self.reread)
        return (
            f"incremental build on {self.published_build}: raw files {', '.join(parts)}; "
            f"re-reading {len(self.reread)}, keeping the published rows of {kept}"
        )


def raw_filesystem(raw_folder: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of the raw folder (a local folder or an s3:// prefix)."""
    if is_remote(raw_folder):
        return filesystem_of(raw_folder)
    return pafs.LocalFileSystem(), os.path.abspath(raw_folder)


def files_checksum(files: Sequence[RawFile]) -> str:
    """One checksum of a build's whole raw input: every file's name and checksum."""
    listed = "\n".join(
        f"{f.name} {f.sha256 or f.etag}" for f in sorted(files, key=lambda f: f.name)
    )
    return hashlib.sha256(listed.encode()).hexdigest()


def list_raw_files(raw_folder: str) -> list[pafs.FileInfo]:
    """The `taxi_YYYY_MM.txt` files directly under `raw_folder`, by name."""
    filesystem, root = raw_filesystem(raw_folder)
    entries = filesystem.get_file_info(pafs.FileSelector(root, recursive=False))
    return sorted(
        (
            entry
            for entry in entries
            if entry.type == pafs.FileType.File and RAW_FILE_PATTERN.fullmatch(entry.base_name)
        ),
        key=lambda entry: entry.base_name,
    )


def _sha256(filesystem: pafs.FileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_raw_files(raw_folder: str, known: Sequence[RawFile] = ()) -> list[RawFile]:
    """Name, size, modification time and checksum of every raw file; a checksum is reused
    from `known` (the published build's record) when name, size and time are the same."""
    filesystem, _ = raw_filesystem(raw_folder)
    previous = {(f.name, f.size, f.mtime_ns): f.sha256 for f in known}
    entries = list_raw_files(raw_folder)

    def one(entry: pafs.FileInfo) -> RawFile:
        key = (entry.base_name, entry.size, entry.mtime_ns or 0)
        checksum = previous.get(key) or _sha256(filesystem, entry.path)
        return RawFile(*key, sha256=checksum)

    with ThreadPoolExecutor(max_workers=2) as pool:  # hashlib releases the GIL
        return list(pool.map(one, entries))


def source_file_of(path: str, column: str) -> str | None:
    """The raw file a data file holds rows of (its `<column>=<file>` folder), or None."""
    found = re.search(rf"/{re.escape(column)}=([^/]+)/", path)
    return found[1] if found else None


def plan_increment(
    catalog: Catalog,
    lake_root: str,
    base: Mapping[str, int | None],
    raw_folder: str,
    logic: str,
    marts_by_raw_file: Sequence[str],
    column: str,
    full_refresh: bool,
) -> Increment:
    """Decide how this build reads the raw files (see the module docstring).

    `base` is what was published when the build started; `marts_by_raw_file` are the marts
    whose files are kept per raw file (`column` names the folder that says which file).
    """
    builds = {invocation_of_mart(catalog, lake_root, name, sid) for name, sid in base.items()}
    published = builds.pop() if len(builds) == 1 else None
    record, known = published_record(lake_root, published)
    files = fingerprint_raw_files(raw_folder, known)
    added, changed, removed = file_changes(known, files)

    def full(reason: str) -> Increment:
        names = sorted(f.name for f in files)
        return Increment(FULL, reason, logic, files, published, added, changed, removed, names)

    reason = full_build_reason(full_refresh, published, record, logic)
    if reason:
        return full(reason)
    published_files = {}
    for name in marts_by_raw_file:
        by_file = _data_files_by_raw_file(load_mart(catalog, lake_root, name), base[name], column)
        if by_file is None:
            return full(f"the published {name} keeps no files per raw file")
        published_files[name] = by_file
    return Increment(
        INCREMENTAL,
        "raw files new or changed since the published build",
        logic,
        files,
        published,
        added=added,
        changed=changed,
        removed=removed,
        reread=added + changed,
        published_files=published_files,
    )


def published_record(lake_root: str, published: str | None) -> tuple[dict | None, list[RawFile]]:
    """The published build's raw_files.json and the raw files it lists (none without one)."""
    record = read_increment(lake_root, published) if published else None
    return record, [RawFile(**f) for f in record["files"]] if record else []


def full_build_reason(
    full_refresh: bool,
    published: str | None,
    record: dict | None,
    logic: str,
    unpublished: str = "no published build to add to",
) -> str | None:
    """Why a build must read every raw file whatever changed in the raw folder (either
    engine; `unpublished` says why there is no published build), or None."""
    if full_refresh:
        return "--full-refresh"
    if published is None:
        return unpublished
    if record is None:
        return f"the published build {published} recorded no raw files"
    if record.get("logic") != logic:
        return "the rules changed since the published build (models, macros, tests or vars)"
    return None


def file_changes(
    known: Sequence[RawFile], files: Sequence[RawFile]
) -> tuple[list[str], list[str], list[str]]:
    """The raw files added, changed (size or checksum) and removed since `known`, by name."""
    before = {f.name: f for f in known}
    now = {f.name: f for f in files}
    added = sorted(set(now) - set(before))
    changed = sorted(
        name for name in set(now) & set(before) if now[name].content_id != before[name].content_id
    )
    return added, changed, sorted(set(before) - set(now))


def _data_files_by_raw_file(
    table, snapshot_id: int | None, column: str
) -> dict[str, list[str]] | None:
    """A snapshot's data files by the raw file in their `column=` folder; None when one of
    them is not kept per raw file."""
    by_file: dict[str, list[str]] = {}
    for data_file in snapshot_data_files(table, snapshot_id):
        source = source_file_of(data_file.file_path, column)
        if source is None:
            return None
        by_file.setdefault(source, []).append(data_file.file_path)
    return by_file


def invocation_of_mart(
    catalog: Catalog, lake_root: str, name: str, snapshot_id: int | None
) -> str | None:
    if snapshot_id is None:
        return None
    return invocation_of(load_mart(catalog, lake_root, name), snapshot_id)


def record_increment(lake_root: str, invocation_id: str, increment: Increment) -> None:
    """raw_files.json of this build, beside its other artifacts."""
    write_artifact(lake_root, invocation_id, RAW_FILES, json.dumps(increment.record(), indent=1))


def read_increment(lake_root: str, invocation_id: str) -> dict | None:
    """What a published build read (raw_files.json), or None for a build that recorded none."""
    return read_artifact(lake_root, invocation_id, RAW_FILES)


def project_logic(project_dir: str, output_vars: Mapping[str, object]) -> str:
    """Checksum of what decides a row's outputs besides the raw file, and which tests it has
    passed: the project's models, macros, tests and dbt_project.yml, and the values of the
    vars the rules read."""
    digest = hashlib.sha256(json.dumps(output_vars, sort_keys=True, default=str).encode())
    paths = [os.path.join(project_dir, "dbt_project.yml")]
    for folder in RULE_FOLDERS:
        for root, dirs, names in os.walk(os.path.join(project_dir, folder)):
            dirs.sort()
            paths += [os.path.join(root, name) for name in sorted(names)]
    for path in paths:
        digest.update(posixpath.relpath(path, project_dir).encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()
