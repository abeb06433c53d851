"""Which Iceberg catalog and table a lake path means (the lake's catalog contract).

Every mart is an Iceberg table `dc_taxi.<mart>` whose location is `<lake_path>/<mart>`. The
catalog is the SQLAlchemy URL in `LAKE_CATALOG_URI` (`glue` for the AWS Glue Data Catalog);
unset, it is the SQLite file `catalog.db` beside a local lake folder (`data/catalog.db` for the
default `data/lake`), or `data/catalog.db` under the working directory for an `s3://` lake.
Credentials never live in the catalog: S3 and Glue use the standard AWS environment.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

NAMESPACE = "dc_taxi"
# Every mart dbt publishes, in the order a build publishes them.
MARTS = (
    "trip_features",
    "trips_rejected",
    "feature_stats",
    "data_quality_summary",
    "model_performance",
)
# Snapshot summary property naming the dbt invocation (the build) that wrote a snapshot.
INVOCATION_PROPERTY = "dbt.invocation_id"
CATALOG_NAME = "lake"
CATALOG_ENV = "LAKE_CATALOG_URI"
T = TypeVar("T")
REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "abfss://")


class LakeError(RuntimeError):
    """The lake is missing or does not match its contract; the message says what to do."""


def is_locked(error: BaseException) -> bool:
    """SQLite refused a write because another process holds the database (builds at once)."""
    from sqlalchemy.exc import OperationalError

    return isinstance(error, OperationalError) and "database is locked" in str(error)


def retry_while(
    transient: Callable[[BaseException], bool], action: Callable[[], T], attempts: int = 10
) -> T:
    """Run `action`, again after a short random wait while it fails with a `transient` error."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as error:
            if attempt == attempts - 1 or not transient(error):
                raise
            time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
    raise AssertionError("unreachable")


def retry_locked(action: Callable[[], T], attempts: int = 10) -> T:
    """Run `action`, again while SQLite says "database is locked".

    Two processes that both read and then write a SQLite catalog in one transaction can be
    refused at once (SQLite's busy timeout does not apply there); trying again succeeds.
    """
    return retry_while(is_locked, action, attempts)


def is_remote(path: str) -> bool:
    return path.startswith(REMOTE_SCHEMES)


def lake_uri(path: str | Path) -> str:
    """A lake folder as a URI: `file:///abs/path` for local folders, `s3://...` as given.

    Local paths are not percent-encoded (pyiceberg and DuckDB take `file://` + the path as it
    is, quotes and spaces included); `#` and `?` would cut a URI short, so they are refused.
    """
    text = str(path).strip()
    if is_remote(text):
        return text.rstrip("/")
    folder = str(Path(local_path(text)).resolve())
    if "#" in folder or "?" in folder:
        raise LakeError(f"the lake folder {folder!r} must not contain '#' or '?' — rename it")
    return "file://" + folder


def local_path(uri: str) -> str:
    """The filesystem path of a `file://` URI (or of a plain path)."""
    return uri.removeprefix("file://")


def filesystem_of(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of a lake URI: `file://` paths are taken as they are
    (not parsed as a URI: they may hold spaces or quotes), others by `FileSystem.from_uri`."""
    if uri.startswith("file:"):
        return pafs.LocalFileSystem(), local_path(uri)
    return pafs.FileSystem.from_uri(uri)


def default_catalog_uri(lake_root: str | Path) -> str:
    """`LAKE_CATALOG_URI`, else a SQLite file beside a local lake (or under ./data for s3)."""
    configured = os.environ.get(CATALOG_ENV, "").strip()
    if configured:
        return configured
    root = str(lake_root)
    folder = Path("data") if is_remote(root) else Path(local_path(lake_uri(root))).parent
    return f"sqlite:///{(folder / 'catalog.db').resolve()}"


def describe_catalog(uri: str) -> str:
    """The catalog URI without a password, for messages and logs."""
    from sqlalchemy.engine import make_url

    if uri in ("glue", "glue://"):
        return "glue"
    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: say only its scheme
        return uri.split(":", 1)[0] + ":…"


def file_io_properties() -> dict[str, str]:
    """pyiceberg FileIO settings from the standard AWS environment (no secrets stored)."""
    properties = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        properties["s3.endpoint"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region or endpoint:
        properties["s3.region"] = region or "us-east-1"
    return properties


def open_catalog(
    lake_root: str | Path, catalog_uri: str | None = None, create: bool = True
) -> Catalog:
    """The catalog of the lake at `lake_root` (see the module docstring for the default).

    Readers pass `create=False`: a missing SQLite catalog file is then an error naming the fix
    instead of a new empty catalog.
    """
    uri = catalog_uri or default_catalog_uri(lake_root)
    if uri in ("glue", "glue://"):
        from pyiceberg.catalog.glue import GlueCatalog

        return GlueCatalog(CATALOG_NAME, **file_io_properties())
    from pyiceberg.catalog.sql import SqlCatalog

    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        if not create and not database.is_file():
            raise LakeError(
                f"no lake catalog at {database} for the lake {lake_uri(lake_root)} — run "
                f"`dbt build` first (or set {CATALOG_ENV} to the lake's catalog)"
            )
        database.parent.mkdir(parents=True, exist_ok=True)
    try:
        return retry_locked(
            lambda: SqlCatalog(
                CATALOG_NAME, uri=uri, warehouse=lake_uri(lake_root), **file_io_properties()
            )
        )
    except Exception as error:  # SQLAlchemy errors can carry the URL: name it without secrets
        raise LakeError(
            f"cannot open the lake catalog {describe_catalog(uri)}: {type(error).__name__}"
            f" — check {CATALOG_ENV}"
        ) from error


def identifier(name: str) -> tuple[str, str]:
    return (NAMESPACE, name)


def table_location(lake_root: str | Path, name: str) -> str:
    return f"{lake_uri(lake_root)}/{name}"


def same_location(a: str, b: str) -> bool:
    def normal(uri: str) -> str:
        uri = uri.rstrip("/")
        return lake_uri(uri) if uri.startswith("file://") or not is_remote(uri) else uri

    return normal(a) == normal(b)


def load_mart(catalog: Catalog, lake_root: str | Path, name: str) -> Table:
    """`dc_taxi.<name>`, checked to live under `lake_root`; an error naming the fix if not."""
    try:
        table = catalog.load_table(identifier(name))
    except NoSuchTableError:
        raise LakeError(
            f"no published table {NAMESPACE}.{name} for the lake {lake_uri(lake_root)} in catalog "
            f"{describe_catalog(catalog.properties.get('uri', CATALOG_NAME))} — run `dbt build`"
            f" first (or set {CATALOG_ENV} to the lake's catalog)"
        ) from None
    expected = table_location(lake_root, name)
    if not same_location(table.location(), expected):
        raise LakeError(
            f"the catalog's {NAMESPACE}.{name} lives at {table.location()}, not {expected} — "
            f"use that lake_path, or another {CATALOG_ENV} for a second lake"
        )
    return table
