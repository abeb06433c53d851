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


# pyarrow's (AWS SDK's) words for "no connection at all": nothing answered at the endpoint.
_CONNECTION_ERRORS = (
    "NETWORK_CONNECTION",
    "Could not connect",
    "Couldn't connect",
    "Could not resolve host",
    "Connection refused",
    "Connection timed out",
)


class S3AccessError(RuntimeError):
    """S3 refused the request, or could not be reached; the message says what to check.

    Not an OSError on purpose: fsspec's glob treats OSError as "nothing here" and would turn
    bad credentials, or an endpoint that is down, into an empty listing ("no raw files").
    """


def arrow_s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem configured from the standard AWS environment variables."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if not endpoint:
        return pafs.S3FileSystem(region=region)
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return pafs.S3FileSystem(endpoint_override=parts.netloc, scheme=parts.scheme, region=region)


def _endpoint_setting() -> tuple[str, str] | None:
    """(the env var naming the S3 endpoint, its value), or None for AWS's own endpoint."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return name, os.environ[name]
    return None


def _access_error(error: OSError, path: str) -> S3AccessError | None:
    """One line naming the fix when pyarrow's error is S3 unreachable, or refusing access."""
    setting = _endpoint_setting()
    if any(words in str(error) for words in _CONNECTION_ERRORS):
        if setting is None:
            return S3AccessError(
                f"S3 is unreachable (reading {path}): no connection to AWS — check the network "
                "and AWS_REGION, or set AWS_ENDPOINT_URL for a local S3 server"
            )
        name, endpoint = setting
        return S3AccessError(
            f"the S3 endpoint {endpoint} ({name}) is unreachable (reading {path}) — start the "
            f"local S3 server (`python -m scripts.s3_server start`) or point {name} at a "
            "running one"
        )
    if not any(code in str(error) for code in _CREDENTIAL_ERRORS):
        return None
    where = f" at {setting[1]}" if setting else ""
    return S3AccessError(
        f"S3{where} refused access to {path} — check AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that the key may read the raw prefix "
        "and write the lake prefix"
    )


def _explained(method):
    """Wrap a filesystem method so access and connection failures surface as one line."""

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
    detail records, so ``ls`` defaults to ``detail=True`` here. Credential failures and an
    unreachable endpoint are re-raised as one clear line instead of the SDK's message (or, in
    a glob, instead of an empty listing).
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
