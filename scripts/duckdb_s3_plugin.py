"""dbt-duckdb plugin for the `s3` target: lets DuckDB read and write ``s3://`` paths offline.

DuckDB's own S3 support is the ``httpfs`` extension, which it downloads at ``INSTALL`` time (and
no PyPI wheel of it matches every DuckDB release). Instead this plugin registers pyarrow's S3
filesystem with DuckDB through fsspec, so ``glob()``, ``read_csv`` and ``COPY ... TO`` with
``partition_by`` / ``overwrite`` work on ``s3://bucket/prefix`` paths with nothing downloaded.

Configuration is the standard AWS environment: credentials from the default chain
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` or ``AWS_PROFILE``),
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, and ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for a
local server such as SeaweedFS (``python -m scripts.s3_server start``).
Enabled in ``profiles.yml`` under the ``s3`` target's ``plugins:``.
"""

from __future__ import annotations

import functools
import os
from urllib.parse import urlsplit

import pyarrow.fs as pafs
from dbt.adapters.duckdb.plugins import BasePlugin
from fsspec.implementations.arrow import ArrowFSWrapper

_CREDENTIAL_ERRORS = (
    "ACCESS_DENIED",
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "No response body",
)


class S3AccessError(RuntimeError):
    """S3 refused the request; the message says which settings to check.

    Not an OSError on purpose: fsspec's glob treats OSError as "nothing here" and would turn
    bad credentials into an empty listing.
    """


def arrow_s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem configured from the standard AWS environment variables."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if not endpoint:
        return pafs.S3FileSystem(region=region)
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return pafs.S3FileSystem(endpoint_override=parts.netloc, scheme=parts.scheme, region=region)


def _access_error(error: OSError, path: str) -> S3AccessError | None:
    """One line naming the fix when pyarrow's error is S3 refusing the credentials or access."""
    if not any(code in str(error) for code in _CREDENTIAL_ERRORS):
        return None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    where = f" at {endpoint}" if endpoint else ""
    return S3AccessError(
        f"S3{where} refused access to {path} — check AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that the key may read the raw prefix "
        "and write the lake prefix"
    )


def _explained(method):
    """Wrap a filesystem method so credential failures surface as one S3AccessError line."""

    @functools.wraps(method)
    def wrapper(self, path, *args, **kwargs):
        try:
            return method(self, path, *args, **kwargs)
        except OSError as error:
            explained = _access_error(error, f"s3://{self._strip_protocol(path)}")
            if explained is None:
                raise
            raise explained from error

    return wrapper


class DuckDBS3FileSystem(ArrowFSWrapper):
    """fsspec view of pyarrow's S3 filesystem under the ``s3://`` and ``s3a://`` protocols.

    DuckDB's fsspec bridge lists directories with ``ls(path)`` and expects fsspec's usual
    detail records, so ``ls`` defaults to ``detail=True`` here. Credential failures are
    re-raised as one clear line instead of the SDK's multi-line message.
    """

    protocol = ("s3", "s3a")
    root_marker = ""

    @_explained
    def ls(self, path, detail=True, **kwargs):
        return super().ls(path, detail=detail, **kwargs)

    info = _explained(ArrowFSWrapper.info)
    _open = _explained(ArrowFSWrapper._open)
    mkdir = _explained(ArrowFSWrapper.mkdir)
    makedirs = _explained(ArrowFSWrapper.makedirs)
    rm = _explained(ArrowFSWrapper.rm)
    rm_file = _explained(ArrowFSWrapper.rm_file)
    rmdir = _explained(ArrowFSWrapper.rmdir)


class Plugin(BasePlugin):
    def configure_connection(self, conn):
        conn.register_filesystem(DuckDBS3FileSystem(arrow_s3_filesystem()))
