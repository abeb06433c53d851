"""Builds that stage the same mart at the same moment each get their own staged snapshot: a
catalog commit refused because another build committed first is tried again, not an error."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.catalog import lake_uri, load_mart, open_catalog
from lakehouse.publish import audit_branch, stage_mart

BUILDS = 4
STAGES_PER_BUILD = 6


def stage_repeatedly(lake: str, build: int, folder: str) -> list[tuple[int, list[str]]]:
    catalog = open_catalog(lake)
    staged = []
    for stage in range(STAGES_PER_BUILD):
        invocation = f"build-{build}-{stage}"
        staged.append(
            stage_mart(catalog, lake, "feature_stats", invocation, folder, f"{folder}/part.parquet")
        )
    return staged


def test_builds_staging_one_mart_at_once_all_succeed(tmp_path: Path):
    (tmp_path / "lake").mkdir()
    stage_at_once(lake_uri(tmp_path / "lake"), tmp_path)


def stage_at_once(lake: str, tmp_path: Path) -> None:
    """BUILDS processes stage one mart of `lake` at once; each staged snapshot has its own
    build's file and its branch points at it."""
    folders = []
    for build in range(BUILDS):
        folder = tmp_path / f"staging-{build}"
        folder.mkdir()
        pq.write_table(pa.table({"feature": ["x"], "build": [build]}), folder / "part.parquet")
        folders.append(str(folder))
    # One table to start from, as after a first build.
    first = folders[0]
    stage_mart(open_catalog(lake), lake, "feature_stats", "first", first, f"{first}/part.parquet")

    with multiprocessing.get_context("spawn").Pool(BUILDS) as pool:
        results = pool.starmap(
            stage_repeatedly, [(lake, build, folders[build]) for build in range(BUILDS)]
        )

    table = load_mart(open_catalog(lake), lake, "feature_stats")
    for build, staged in enumerate(results):
        for stage, (snapshot_id, files) in enumerate(staged):
            assert files == [f"file://{folders[build]}/part.parquet"]
            assert table.metadata.refs[audit_branch(f"build-{build}-{stage}")].snapshot_id == (
                snapshot_id
            )
            rows = table.scan(snapshot_id=snapshot_id).to_arrow()
            assert rows.column("build").to_pylist() == [build]  # only this build's file
