"""Write-audit-publish: a build stages every mart, its tests read what is staged, then one
catalog transaction publishes all marts together.

- `current_snapshots` (at build start): the published snapshot of every mart, the build's base.
- `stage_mart`: registers the Parquet files DuckDB wrote for one mart as a snapshot on the
  branch `audit-<invocation id>`; `main` (what readers read) does not move.
- `publish_build`: points `main` of every mart at the build's staged snapshot in ONE catalog
  transaction, and only if no other build published since this one started (optimistic
  concurrency); a kill at any moment leaves the previous build current.

Every staged snapshot's summary carries `dbt.invocation_id`, so readers can always take marts
of the same build.
"""

from __future__ import annotations

import os
import posixpath
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError
from pyiceberg.io.pyarrow import parquet_files_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, TableProperties, Transaction
from pyiceberg.table.update.snapshot import ManageSnapshots
from sqlalchemy import update
from sqlalchemy.orm import Session

from lakehouse.catalog import (
    INVOCATION_PROPERTY,
    MARTS,
    NAMESPACE,
    LakeError,
    T,
    filesystem_of,
    identifier,
    is_locked,
    lake_uri,
    load_mart,
    open_catalog,
    retry_while,
    table_location,
)

AUDIT_PREFIX = "audit-"
PUBLISH_PAUSE_ENV = "LAKE_PUBLISH_PAUSE_S"  # seconds; only for the crash tests
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.format.default": "parquet",
    "write.parquet.compression-codec": "zstd",
}


class PublishConflict(LakeError):
    """Another build published while this one ran; nothing of this build was published."""


def audit_branch(invocation_id: str) -> str:
    return f"{AUDIT_PREFIX}{invocation_id}"


def invocation_of(table: Table, snapshot_id: int | None) -> str | None:
    snapshot = table.metadata.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    return snapshot.summary.additional_properties.get(INVOCATION_PROPERTY) if snapshot else None


def current_snapshots(catalog: Catalog, lake_root: str) -> dict[str, int | None]:
    """The published snapshot id of every mart (None: not published yet)."""
    current: dict[str, int | None] = {}
    for name in MARTS:
        try:
            table = load_mart(catalog, lake_root, name)
        except LakeError:
            if catalog.table_exists(identifier(name)):
                raise  # it exists, but elsewhere: load_mart's message says so
            current[name] = None
            continue
        current[name] = table.metadata.current_snapshot_id
    return current


def list_data_files(folder: str) -> list[str]:
    """Parquet files under `folder` (a path or URI) as sorted URIs; `_`/`.` names skipped."""
    uri = lake_uri(folder)
    filesystem, root = filesystem_of(uri)
    scheme = uri.split("://", 1)[0] + "://"
    if filesystem.get_file_info(root).type != pafs.FileType.Directory:
        return []
    return sorted(
        scheme + entry.path
        for entry in filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        if entry.type == pafs.FileType.File
        and not any(
            part.startswith(("_", ".")) for part in posixpath.relpath(entry.path, root).split("/")
        )
    )


def ensure_namespace(catalog: Catalog) -> None:
    """Create the `dc_taxi` namespace unless it exists (another build may create it meanwhile)."""
    try:
        catalog.create_namespace_if_not_exists(NAMESPACE)
    except Exception:
        if not catalog.namespace_exists(NAMESPACE):
            raise


def ensure_table(
    catalog: Catalog,
    lake_root: str,
    name: str,
    schema: pa.Schema,
    partition_by: str | Sequence[str] | None,
) -> Table:
    """`dc_taxi.<name>` at `<lake_root>/<name>`, created with `schema` if it is new, its files
    partitioned by the identity of the `partition_by` column(s)."""
    if catalog.table_exists(identifier(name)):
        return load_mart(catalog, lake_root, name)
    ensure_namespace(catalog)
    try:
        table = catalog.create_table(
            identifier(name),
            schema=schema,
            location=table_location(lake_root, name),
            properties=TABLE_PROPERTIES,
        )
    except TableAlreadyExistsError:  # another build created it a moment ago
        return load_mart(catalog, lake_root, name)
    if partition_by:
        with table.update_spec() as spec:
            for column in [partition_by] if isinstance(partition_by, str) else partition_by:
                spec.add_identity(column)
    return load_mart(catalog, lake_root, name)


def stage_mart(
    catalog: Catalog,
    lake_root: str,
    name: str,
    invocation_id: str,
    data_folder: str,
    schema_file: str,
    partition_by: str | None = None,
    keep: Sequence[str] | None = None,
) -> tuple[int, list[str]]:
    """Stage the Parquet files under `data_folder` as `name`'s snapshot for this build,
    together with the published data files in `keep` (an incremental build; None: none).

    Returns the staged snapshot id and all its data files, for the build's tests to read.
    """
    files = list_data_files(data_folder)
    kept = sorted(keep or ())
    with catalog._load_file_io(location=schema_file).new_input(schema_file).open() as handle:
        arrow_schema = pq.read_schema(handle)
    table = ensure_table(catalog, lake_root, name, arrow_schema, partition_by)
    # Another build committing to the same table between our read of its metadata and our
    # commit makes the commit fail (optimistic concurrency); staging touches neither main nor
    # the other build's branch, so it is simply done again on the table as it now is.
    staged = retry_conflicts(
        lambda: _stage_snapshot(table.refresh(), arrow_schema, files, invocation_id, set(kept))
    )
    # Then the audit branch, in a commit of its own: Iceberg refuses a branch other than main
    # on a table that had no snapshot before the commit.
    branch = audit_branch(invocation_id)

    def create_branch() -> None:
        with table.refresh().manage_snapshots() as snapshots:
            snapshots.create_branch(snapshot_id=staged, branch_name=branch)

    retry_conflicts(create_branch)
    return staged, kept + files


def _stage_snapshot(
    table: Table,
    arrow_schema: pa.Schema,
    files: Sequence[str],
    invocation_id: str,
    keep: set[str],
) -> int:
    """Commit a snapshot that replaces every file main has, except those in `keep`, with
    `files`, without moving main (branch=None); its id."""
    with table.transaction() as transaction:
        if set(arrow_schema.names) != set(table.schema().column_names):
            with transaction.update_schema() as schema:
                schema.union_by_name(arrow_schema)
        new_files = data_files_of(table, transaction, files)
        producer = transaction.update_snapshot(
            snapshot_properties={INVOCATION_PROPERTY: invocation_id}, branch=None
        ).overwrite()
        with producer:
            for data_file in main_data_files(table):
                if data_file.file_path not in keep:
                    producer.delete_data_file(data_file)
            for data_file in new_files:
                producer.append_data_file(data_file)
    return producer.snapshot_id


def is_commit_conflict(error: BaseException) -> bool:
    """Another process committed to the same table between this one's read and its commit.

    pyiceberg says so with CommitFailedException when the catalog's swap finds new metadata,
    but with a ValueError when it re-applies this commit's snapshot on the newer metadata
    first (its sequence number is then stale): both mean "do it again on the table as it is".
    """
    if isinstance(error, CommitFailedException):
        return True
    return isinstance(error, ValueError) and "older than last sequence number" in str(error)


def retry_conflicts(action: Callable[[], T]) -> T:
    """Run `action`, again while its catalog commit fails because another process committed
    to the same table first (or holds the SQLite catalog)."""
    return retry_while(lambda error: is_commit_conflict(error) or is_locked(error), action)


def data_files_of(table: Table, transaction: Transaction, files: Sequence[str]) -> list[DataFile]:
    """Iceberg data files (stats, partition) of Parquet files written without field ids."""
    if transaction.table_metadata.name_mapping() is None:  # DuckDB / pyarrow write no field ids
        mapping = transaction.table_metadata.schema().name_mapping.model_dump_json()
        transaction.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING: mapping})
    return list(parquet_files_to_data_files(table.io, transaction.table_metadata, iter(files)))


def main_data_files(table: Table) -> list[DataFile]:
    """The data files of the table's current (published) snapshot."""
    return snapshot_data_files(table, table.metadata.current_snapshot_id)


def snapshot_data_files(table: Table, snapshot_id: int | None) -> list[DataFile]:
    """The data files of one snapshot of the table (none for None)."""
    snapshot = table.metadata.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    if snapshot is None:
        return []
    return [
        entry.data_file
        for manifest in snapshot.manifests(table.io)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
    ]


def _publish_transaction(table: Table, staged_id: int, branch: str) -> Transaction:
    transaction = table.transaction()
    with ManageSnapshots(transaction) as snapshots:
        snapshots.set_current_snapshot(snapshot_id=staged_id).remove_branch(branch)
    return transaction


def commit_together(catalog: Catalog, transactions: Sequence[Transaction]) -> None:
    """Commit transactions of several tables atomically: all or none become visible.

    A SQL catalog keeps each table's current metadata file in one row; every table's new
    metadata file is written first, then one database transaction swaps all the rows, each
    only if it still names the metadata this process read (optimistic concurrency).
    """
    if not isinstance(catalog, SqlCatalog):
        raise LakeError(
            "publishing several tables at once needs a SQL catalog (LAKE_CATALOG_URI = a "
            "SQLAlchemy URL); on Athena the build publishes itself (docs/aws.md)"
        )
    staged = []
    for transaction in transactions:
        table = transaction._table
        updates, requirements = transaction._updates, transaction._requirements
        new = catalog._update_and_stage_table(table, table.name(), requirements, updates)
        catalog._write_metadata(new.metadata, new.io, new.metadata_location)
        staged.append((table, new))
    # Crash tests hold the publish here, every new metadata file written, nothing swapped yet.
    pause = float(os.environ.get(PUBLISH_PAUSE_ENV) or 0)
    if pause:
        print(
            f"lake: publish held for {pause} s ({PUBLISH_PAUSE_ENV})", file=sys.stderr, flush=True
        )
        time.sleep(pause)
    with Session(catalog.engine) as session, session.begin():
        for table, new in staged:
            namespace, name = table.name()[-2], table.name()[-1]
            done = session.execute(
                update(IcebergTables)
                .where(
                    IcebergTables.catalog_name == catalog.name,
                    IcebergTables.table_namespace == namespace,
                    IcebergTables.table_name == name,
                    IcebergTables.metadata_location == table.metadata_location,
                )
                .values(
                    metadata_location=new.metadata_location,
                    previous_metadata_location=table.metadata_location,
                )
            )
            if done.rowcount < 1:
                raise CommitFailedException(f"{namespace}.{name} changed while publishing")


def publish_build(
    catalog: Catalog,
    lake_root: str,
    invocation_id: str,
    base: Mapping[str, int | None],
    marts: Iterable[str] = MARTS,
) -> dict[str, int]:
    """Make this build's staged snapshots the current ones of every mart, atomically.

    `base` is what was published when the build started (`current_snapshots`). If any mart's
    published snapshot moved since, another build published meanwhile: raise PublishConflict
    and publish nothing.
    """
    branch = audit_branch(invocation_id)

    def publish_once() -> dict[str, int]:
        transactions, published = [], {}
        for name in marts:
            table = load_mart(catalog, lake_root, name)
            ref = table.metadata.refs.get(branch)
            if ref is None:
                raise LakeError(
                    f"build {invocation_id} staged nothing for {NAMESPACE}.{name} — nothing was "
                    "published; run the whole `dbt build`"
                )
            current = table.metadata.current_snapshot_id
            if current != base.get(name):
                other = invocation_of(table, current) or "unknown"
                raise PublishConflict(
                    f"another build (dbt invocation {other}) published {NAMESPACE}.{name} while "
                    f"build {invocation_id} ran — nothing of this build was published; run "
                    "`dbt build` again"
                )
            transactions.append(_publish_transaction(table, ref.snapshot_id, branch))
            published[name] = ref.snapshot_id
        commit_together(catalog, transactions)
        return published

    # A table that changed while publishing may only have a new branch of another build that
    # is staging: then nothing was published and publishing again succeeds. If another build
    # published, the next attempt sees main moved and raises PublishConflict.
    try:
        return retry_conflicts(publish_once)
    except CommitFailedException as error:
        raise PublishConflict(
            f"another build kept changing the lake while build {invocation_id} was publishing "
            f"({error}) — nothing of this build was published; run `dbt build` again"
        ) from error


def point_main_at(catalog: Catalog, lake_root: str, snapshots: Mapping[str, int]) -> None:
    """Make the given snapshots current (a rollback to an earlier build), atomically."""
    transactions = []
    for name, snapshot_id in snapshots.items():
        table = load_mart(catalog, lake_root, name)
        transaction = table.transaction()
        with ManageSnapshots(transaction) as manage:
            manage.set_current_snapshot(snapshot_id=snapshot_id)
        transactions.append(transaction)
    commit_together(catalog, transactions)


def publish_folders(
    lake_root: str,
    invocation_id: str,
    folders: Mapping[str, str],
    partition_by: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
) -> dict[str, int]:
    """Stage and publish Parquet folders (mart -> folder under its table) as one build.

    What a dbt build does, for tools and tests that write marts without dbt. Each folder
    must hold at least one Parquet file; its first file's schema is the table's.
    """
    catalog = catalog or open_catalog(lake_root)
    base = current_snapshots(catalog, lake_root)
    for name, folder in folders.items():
        files = list_data_files(folder)
        if not files:
            raise LakeError(f"no Parquet files under {folder}")
        stage_mart(
            catalog,
            lake_root,
            name,
            invocation_id,
            folder,
            files[0],
            (partition_by or {}).get(name),
        )
    return publish_build(catalog, lake_root, invocation_id, base, list(folders))
