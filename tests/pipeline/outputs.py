"""Read the marts the way their consumers do: the lake's current published build, no database."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.builds import PinnedBuild, pin_build
from lakehouse.catalog import filesystem_of


def current_build(lake: Path | str) -> PinnedBuild:
    return pin_build(f"{str(lake).rstrip('/')}/trip_features")


def read_table(build: PinnedBuild, name: str) -> pa.Table:
    """Every row of one mart in a pinned build."""
    tables = []
    for data_file in build.data_files(name):
        filesystem, path = filesystem_of(data_file.uri)
        with filesystem.open_input_file(path) as handle:
            tables.append(pq.read_table(handle))
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def read_mart(lake: Path | str, name: str) -> list[dict]:
    """Every row of one mart in the lake's current published build."""
    return read_table(current_build(lake), name).to_pylist()


def read_staged(lake: Path | str, invocation_id: str, name: str) -> list[dict]:
    """Every row one build staged for a mart (its audit branch), published or not."""
    from lakehouse.catalog import load_mart, open_catalog
    from lakehouse.publish import audit_branch

    table = load_mart(open_catalog(str(lake), create=False), str(lake), name)
    snapshot = table.metadata.refs[audit_branch(invocation_id)].snapshot_id
    return table.scan(snapshot_id=snapshot).to_arrow().to_pylist()
