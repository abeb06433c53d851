"""Readers pin one published build: the current one, a snapshot id, or the one current at a time.

A build is what one `dbt build` published: one snapshot of every mart, all carrying the same
`dbt.invocation_id` in their summary. A reader resolves it once (`pin_build`) and then reads only
those snapshots' data files, however long it runs and whatever is published meanwhile.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyiceberg.catalog import Catalog
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from lakehouse.catalog import (
    INVOCATION_PROPERTY,
    MARTS,
    NAMESPACE,
    LakeError,
    default_catalog_uri,
    describe_catalog,
    lake_uri,
    load_mart,
    open_catalog,
)


@dataclass(frozen=True)
class DataFile:
    """One Parquet data file of a pinned snapshot."""

    uri: str  # file:///... or s3://...
    rows: int


@dataclass(frozen=True)
class PinnedBuild:
    """One published build: the snapshot of every mart it wrote, and where they live."""

    lake_root: str  # the lake's URI
    catalog: str  # the catalog URI, without secrets
    invocation_id: str
    published_at: datetime  # when this build became current
    snapshots: dict[str, int]  # mart name -> snapshot id
    tables: dict[str, Table] = field(repr=False, compare=False, default_factory=dict)

    @property
    def snapshot_id(self) -> int:
        """The trip_features snapshot: the id `--snapshot` takes."""
        return self.snapshots["trip_features"]

    def data_files(self, mart: str, split: str | None = None) -> list[DataFile]:
        """The data files of `mart` in this build (only one split's, for trip_features)."""
        scan = self.tables[mart].scan(snapshot_id=self.snapshots[mart])
        if split is not None:
            scan = scan.filter(EqualTo("split", split))
        files = [
            DataFile(uri=task.file.file_path, rows=task.file.record_count)
            for task in scan.plan_files()
        ]
        return sorted(files, key=lambda f: f.uri)

    def describe(self) -> dict[str, str]:
        """Lineage tags for MLflow and reports."""
        return {
            "lake.uri": self.lake_root,
            "lake.catalog": self.catalog,
            "lake.snapshot_id": str(self.snapshot_id),
            "lake.published_at": self.published_at.isoformat(timespec="seconds"),
            "dbt.invocation_id": self.invocation_id,
        }


def parse_as_of(text: str | None) -> datetime | None:
    """`--as-of` as an aware datetime (ISO 8601; no zone means UTC)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise LakeError(
            f"--as-of {text!r} is not an ISO 8601 time — e.g. 2026-12-01T18:30:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def split_data_uri(data_uri: str) -> tuple[str, str]:
    """`<lake_root>/<mart>` -> (lake_root, mart); `--data` names a mart's location."""
    text = str(data_uri).strip().rstrip("/")
    if "://" in text and not text.startswith("file://"):
        return posixpath.dirname(text), posixpath.basename(text)
    uri = lake_uri(text)
    return uri.rsplit("/", 1)[0], uri.rsplit("/", 1)[1]


def published_snapshots(table: Table) -> list[tuple[int, int]]:
    """(snapshot id, ms when it became current) of every build published to `table`, oldest
    first; snapshots since expired are left out."""
    return [
        (entry.snapshot_id, entry.timestamp_ms)
        for entry in table.history()
        if table.metadata.snapshot_by_id(entry.snapshot_id) is not None
    ]


def invocation_id(snapshot: Snapshot) -> str:
    return snapshot.summary.additional_properties.get(INVOCATION_PROPERTY, "unknown")


def choose_snapshot(
    table: Table, snapshot_id: int | None, as_of: datetime | None
) -> tuple[Snapshot, int]:
    """The published snapshot a reader asked for, and when it was published (ms)."""
    published = published_snapshots(table)
    name = ".".join(table.name())
    if not published:
        raise LakeError(f"{name} has no published build yet — run `dbt build` first")
    if snapshot_id is not None:
        times = [ms for sid, ms in published if sid == snapshot_id]
        if not times:
            raise LakeError(
                f"snapshot {snapshot_id} is not a published build of {name} (never published, "
                "or expired) — `python -m lakehouse builds` lists the builds you can pin"
            )
        return table.metadata.snapshot_by_id(snapshot_id), times[-1]
    if as_of is not None:
        limit = int(as_of.timestamp() * 1000)
        earlier = [(sid, ms) for sid, ms in published if ms <= limit]
        if not earlier:
            raise LakeError(
                f"no build of {name} was published by {as_of.isoformat()} (the oldest kept is "
                f"from {_iso(published[0][1])}) — `python -m lakehouse builds` lists them"
            )
        sid, ms = earlier[-1]
        return table.metadata.snapshot_by_id(sid), ms
    current = table.metadata.current_snapshot_id
    times = [ms for sid, ms in published if sid == current]
    return table.metadata.snapshot_by_id(current), times[-1] if times else 0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def build_snapshot(table: Table, invocation: str) -> int:
    """The published snapshot of `table` written by build `invocation`."""
    for sid, _ in reversed(published_snapshots(table)):
        if invocation_id(table.metadata.snapshot_by_id(sid)) == invocation:
            return sid
    raise LakeError(
        f"{'.'.join(table.name())} has no published snapshot of build {invocation} (expired?) — "
        "pin a build that `python -m lakehouse builds` lists"
    )


@dataclass(frozen=True)
class GlueVersion:
    """One published version of a Glue table: the build that wrote it, and its metadata."""

    invocation_id: str
    metadata_location: str
    published_ms: int


def is_glue(catalog: Catalog) -> bool:
    return type(catalog).__name__ == "GlueCatalog"


def glue_history(catalog: Catalog, mart: str) -> list[GlueVersion]:
    """`dc_taxi.<mart>` as published on Athena, newest first: every Glue version of it.

    Athena can write no property into an Iceberg snapshot, so its build publishes each mart as
    a whole new Iceberg table (swapped into the Glue entry) stamped with the Glue parameter
    `dbt.invocation_id` (dbt_project/macros/athena_lake.sql, docs/aws.md).
    """
    glue = catalog.glue
    pages = glue.get_paginator("get_table_versions").paginate(
        DatabaseName=NAMESPACE, TableName=mart
    )
    tables = [version["Table"] for page in pages for version in page["TableVersions"]]
    tables.sort(key=lambda table: int(table.get("VersionId", 0)), reverse=True)
    tables.insert(0, glue.get_table(DatabaseName=NAMESPACE, Name=mart)["Table"])
    history, seen = [], set()
    for table in tables:
        parameters = table.get("Parameters", {})
        location = parameters.get("metadata_location")
        if location is None or location in seen:
            continue
        seen.add(location)
        moment = table.get("UpdateTime") or table.get("CreateTime")
        history.append(
            GlueVersion(
                invocation_id=parameters.get(INVOCATION_PROPERTY, "unknown"),
                metadata_location=location,
                published_ms=int(moment.timestamp() * 1000) if moment else 0,
            )
        )
    return history


def _glue_table(version: GlueVersion, lake_root: str, mart: str) -> Table:
    """The mart as one Glue version's metadata file describes it; it must live in the lake."""
    from pyiceberg.table import StaticTable

    from lakehouse.catalog import file_io_properties

    table = StaticTable.from_metadata(version.metadata_location, properties=file_io_properties())
    if not table.location().startswith(f"{lake_root}/{mart}/"):
        raise LakeError(
            f"Glue's {NAMESPACE}.{mart} lives at {table.location()}, not under "
            f"{lake_root}/{mart}/ — use that lake_path"
        )
    return table


def _glue_version_as_of(
    history: list[GlueVersion], mart: str, as_of: datetime | None
) -> GlueVersion:
    """The newest version of `mart` published by `as_of` (or now)."""
    if not history:
        raise LakeError(f"{NAMESPACE}.{mart} has no published build yet — run `dbt build`")
    if as_of is None:
        return history[0]
    limit = int(as_of.timestamp() * 1000)
    chosen = next((v for v in history if v.published_ms <= limit), None)
    if chosen is None:
        raise LakeError(f"no build of {NAMESPACE}.{mart} was published by {as_of}")
    return chosen


def _glue_version_with_snapshot(
    history: list[GlueVersion], lake_root: str, mart: str, snapshot_id: int
) -> tuple[GlueVersion, Table]:
    """The published version of `mart` whose table holds `snapshot_id`, and that table."""
    for version in history:
        table = _glue_table(version, lake_root, mart)
        if table.metadata.snapshot_by_id(snapshot_id) is not None:
            return version, table
    raise LakeError(
        f"snapshot {snapshot_id} is not a published build of {NAMESPACE}.{mart} — "
        "`python -m lakehouse builds` lists the builds you can pin"
    )


def pin_glue_build(
    catalog: Catalog,
    lake_root: str,
    main_mart: str,
    snapshot_id: int | None,
    as_of: datetime | None,
    marts: tuple[str, ...],
) -> PinnedBuild:
    """`pin_build` for a lake Athena publishes into Glue (see `glue_history`)."""
    history = glue_history(catalog, main_mart)
    chosen = _glue_version_as_of(history, main_mart, as_of)
    if snapshot_id is None:
        tables = {main_mart: _glue_table(chosen, lake_root, main_mart)}
    else:
        chosen, table = _glue_version_with_snapshot(history, lake_root, main_mart, snapshot_id)
        tables = {main_mart: table}
    for mart in marts:
        if mart in tables:
            continue
        same = [v for v in glue_history(catalog, mart) if v.invocation_id == chosen.invocation_id]
        if not same:
            raise LakeError(
                f"{NAMESPACE}.{mart} has no published version of build {chosen.invocation_id}"
            )
        tables[mart] = _glue_table(same[0], lake_root, mart)
    snapshots = {mart: table.metadata.current_snapshot_id for mart, table in tables.items()}
    if snapshot_id is not None:
        snapshots[main_mart] = snapshot_id
    return PinnedBuild(
        lake_root=lake_root,
        catalog="glue",
        invocation_id=chosen.invocation_id,
        published_at=datetime.fromtimestamp(chosen.published_ms / 1000, UTC),
        snapshots=snapshots,
        tables=tables,
    )


def pin_build(
    data_uri: str,
    snapshot_id: int | None = None,
    as_of: datetime | None = None,
    catalog: Catalog | None = None,
    marts: tuple[str, ...] = MARTS,
) -> PinnedBuild:
    """Resolve the build to read through `data_uri`'s mart (normally trip_features).

    Current build by default; `snapshot_id` (of that mart) or `as_of` pin an older one. The
    other marts are taken at the snapshot the same build published.
    """
    lake_root, main_mart = split_data_uri(data_uri)
    catalog = catalog or open_catalog(lake_root, create=False)
    if is_glue(catalog):
        return pin_glue_build(catalog, lake_root, main_mart, snapshot_id, as_of, marts)
    table = load_mart(catalog, lake_root, main_mart)
    snapshot, published_ms = choose_snapshot(table, snapshot_id, as_of)
    invocation = invocation_id(snapshot)
    tables = {main_mart: table}
    snapshots = {main_mart: snapshot.snapshot_id}
    for mart in marts:
        if mart not in tables:
            tables[mart] = load_mart(catalog, lake_root, mart)
            snapshots[mart] = build_snapshot(tables[mart], invocation)
    return PinnedBuild(
        lake_root=lake_root,
        catalog=describe_catalog(catalog.properties.get("uri") or default_catalog_uri(lake_root)),
        invocation_id=invocation,
        published_at=datetime.fromtimestamp(published_ms / 1000, UTC),
        snapshots=snapshots,
        tables=tables,
    )


def list_builds(data_uri: str, catalog: Catalog | None = None) -> list[dict[str, str]]:
    """Every published build still kept, oldest first, with the current one marked."""
    lake_root, mart = split_data_uri(data_uri)
    table = load_mart(catalog or open_catalog(lake_root, create=False), lake_root, mart)
    current = table.metadata.current_snapshot_id
    published = published_snapshots(table)
    builds = []
    for position, (sid, ms) in enumerate(published):
        snapshot = table.metadata.snapshot_by_id(sid)
        is_current = sid == current and position == len(published) - 1
        builds.append(
            {
                "snapshot_id": str(sid),
                "dbt_invocation_id": invocation_id(snapshot),
                "published_at": _iso(ms),
                "rows": snapshot.summary.additional_properties.get("total-records", "?"),
                "current": "yes" if is_current else "",
            }
        )
    return builds


__all__ = ["NAMESPACE", "DataFile", "PinnedBuild", "list_builds", "parse_as_of", "pin_build"]
