"""Lake housekeeping: keep the last N published builds, drop what failed builds left behind.

- Audit branches of builds that can no longer publish (older than the current build, or than
  the grace period) are removed.
- Snapshots that are neither one of the last `keep` published builds nor a branch head are
  expired (the same builds on every mart, chosen by dbt invocation id).
- Files under a mart's folder that no kept snapshot or metadata file references (data of
  failed or killed builds, old manifests and metadata) are deleted once older than the grace
  period, so a build that is writing right now loses nothing; so are the dbt artifacts under
  `_builds/` of every build not kept.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass, field

import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from lakehouse.build_artifacts import BUILDS_FOLDER
from lakehouse.builds import invocation_id, published_snapshots
from lakehouse.catalog import MARTS, filesystem_of, lake_uri, load_mart, local_path
from lakehouse.publish import AUDIT_PREFIX


@dataclass
class Cleanup:
    """What one maintenance pass removed (or would remove, in a dry run)."""

    branches: list[str] = field(default_factory=list)
    snapshots: int = 0
    files: list[str] = field(default_factory=list)
    bytes: int = 0


def kept_builds(table: Table, keep: int) -> list[str]:
    """Invocation ids of the last `keep` builds published to `table` (the current one first)."""
    kept: list[str] = []
    for sid, _ in reversed(published_snapshots(table)):
        build = invocation_id(table.metadata.snapshot_by_id(sid))
        if build not in kept:
            kept.append(build)
        if len(kept) == keep:
            break
    return kept


def dead_branches(table: Table, grace_ms: int, now_ms: int) -> list[str]:
    """Audit branches whose build can no longer publish: staged before the current build was
    published (its publish would fail the base check) or older than the grace period."""
    history = table.history()
    published_ms = history[-1].timestamp_ms if history else 0
    dead = []
    for name, ref in table.metadata.refs.items():
        if not name.startswith(AUDIT_PREFIX):
            continue
        staged_ms = table.metadata.snapshot_by_id(ref.snapshot_id).timestamp_ms
        if staged_ms < published_ms or now_ms - staged_ms > grace_ms:
            dead.append(name)
    return dead


def referenced_files(table: Table) -> set[str]:
    """Every file the table's metadata still points at: data, manifests, lists, metadata."""
    io = table.io
    files = {table.metadata_location}
    files.update(entry.metadata_file for entry in table.metadata.metadata_log)
    for snapshot in table.metadata.snapshots:
        files.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            files.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=False):
                files.add(entry.data_file.file_path)
    for statistics in table.metadata.statistics:
        files.add(statistics.statistics_path)
    return {normal_uri(path) for path in files}


def normal_uri(path: str) -> str:
    return "file://" + local_path(path) if path.startswith(("file:", "/")) else path


def files_under(location: str) -> list[pafs.FileInfo]:
    filesystem, root = filesystem_of(location)
    if filesystem.get_file_info(root).type != pafs.FileType.Directory:
        return []
    scheme = "file://" if location.startswith("file:") else location.split("://")[0] + "://"
    found = []
    for info in filesystem.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            info_path = info.path if info.path.startswith("/") else "/" + info.path
            uri = scheme + (info_path if scheme == "file://" else info.path)
            found.append((uri, info, filesystem))
    return found


def clean_table(
    table: Table, keep: int, grace_s: float, dry_run: bool, builds: list[str]
) -> Cleanup:
    done = Cleanup()
    now_ms = int(time.time() * 1000)
    done.branches = dead_branches(table, int(grace_s * 1000), now_ms)
    if done.branches and not dry_run:
        with table.manage_snapshots() as snapshots:
            for branch in done.branches:
                snapshots.remove_branch(branch)
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    expired = [
        snapshot.snapshot_id
        for snapshot in table.metadata.snapshots
        if snapshot.snapshot_id not in protected
        and invocation_id(snapshot) not in builds
        and now_ms - snapshot.timestamp_ms > grace_s * 1000
    ]
    done.snapshots = len(expired)
    if expired and not dry_run:
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        table.refresh()
    referenced = referenced_files(table)
    for uri, info, filesystem in files_under(table.location()):
        age_s = time.time() - info.mtime.timestamp() if info.mtime else 0
        if normal_uri(uri) in referenced or age_s < grace_s:
            continue
        done.files.append(uri)
        done.bytes += info.size or 0
        if not dry_run:
            filesystem.delete_file(info.path)
    return done


def maintain(
    catalog: Catalog, lake_root: str, keep: int, grace_s: float, dry_run: bool = False
) -> dict[str, Cleanup]:
    """Keep the last `keep` published builds on every mart; remove the rest and all orphans."""
    if keep < 1:
        raise ValueError("keep at least the current build (--keep 1)")
    tables = {name: load_mart(catalog, lake_root, name) for name in MARTS}
    builds = kept_builds(tables["trip_features"], keep)
    done = {
        name: clean_table(table, keep, grace_s, dry_run, builds) for name, table in tables.items()
    }
    done[BUILDS_FOLDER] = clean_artifacts(lake_root, builds, grace_s, dry_run)
    return done


def clean_artifacts(lake_root: str, builds: list[str], grace_s: float, dry_run: bool) -> Cleanup:
    """The dbt artifacts of builds that are not kept (`lakehouse.build_artifacts`), once older
    than the grace period: a build that is publishing right now keeps its own."""
    done = Cleanup()
    root = f"{lake_uri(lake_root)}/{BUILDS_FOLDER}/"
    by_build: dict[str, list] = {}
    for found in files_under(root):
        by_build.setdefault(found[0].removeprefix(root).split("/", 1)[0], []).append(found)
    for build, files in by_build.items():
        newest = max(info.mtime.timestamp() if info.mtime else time.time() for _, info, _ in files)
        if build in builds or time.time() - newest < grace_s:
            continue
        done.files += [uri for uri, _, _ in files]
        done.bytes += sum(info.size or 0 for _, info, _ in files)
        if not dry_run:
            _, info, filesystem = files[0]  # the build's folder holds only its files
            filesystem.delete_dir(posixpath.dirname(info.path))
    return done


__all__ = ["Cleanup", "maintain"]
