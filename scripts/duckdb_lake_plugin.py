"""dbt-duckdb plugin: creates the local folders the warehouse file and the lake live in.

DuckDB opens its database file only if the file's folder exists, and its ``COPY ... TO``
creates only the last folder of its target, so on a fresh checkout both
``data/warehouse.duckdb`` and ``data/lake/trip_features`` would fail. The plugin creates the
database file's folder before dbt connects, and registers one scalar function,
``lake_ensure_dir(path)``, that creates a local folder and its parents and returns the path; for
object-store URLs (``s3://`` ...) it does nothing, since prefixes need no folders. Enabled in
``profiles.yml`` under ``plugins:``.
"""

from __future__ import annotations

import os

from dbt.adapters.duckdb.plugins import BasePlugin

_REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfss://", "http://", "https://")


def lake_ensure_dir(path: str) -> str:
    """Create ``path`` (and parents) unless it is an object-store URL; return it unchanged."""
    if not path.startswith(_REMOTE_SCHEMES):
        os.makedirs(path.removeprefix("file://"), exist_ok=True)
    return path


class Plugin(BasePlugin):
    def update_connection_config(self, creds, config):
        path = creds.path
        if path and path != ":memory:" and not path.startswith(("md:", "motherduck:")):
            lake_ensure_dir(os.path.dirname(os.path.abspath(path)))

    def configure_connection(self, conn):
        conn.create_function(
            "lake_ensure_dir",
            lake_ensure_dir,
            ["VARCHAR"],
            "VARCHAR",
            side_effects=True,
        )
