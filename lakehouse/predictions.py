"""The lake's `fare_predictions` table: what a registered model predicted for a published build.

`dc_taxi.fare_predictions` at `<lake_root>/fare_predictions`, partitioned by model name and
version, holds one row per scored trip: `trip_key`, `split`, `predicted_fare` (dollars),
`model_name`, `model_version`, `lake_snapshot_id` (the trip_features snapshot scored).
`publish_predictions` replaces one model version's rows in ONE table commit: readers see the
old rows or the new ones, never a mix; other versions' rows stay. The files it registers are
written first under `<lake_root>/fare_predictions/data/<scoring id>/`.
"""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from lakehouse.catalog import NAMESPACE, LakeError, load_mart, table_location
from lakehouse.publish import (
    data_files_of,
    ensure_table,
    is_commit_conflict,
    list_data_files,
    main_data_files,
    retry_conflicts,
)

TABLE = "fare_predictions"
PARTITION = ("model_name", "model_version")
SCHEMA = pa.schema(
    [
        pa.field("trip_key", pa.string()),
        pa.field("split", pa.string()),
        pa.field("predicted_fare", pa.float64()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("lake_snapshot_id", pa.int64()),
    ]
)
MODEL_PROPERTY = "dc_taxi.model"  # snapshot summary: `<name>/<version>` this commit replaced
SCORED_PROPERTY = "dc_taxi.scored_snapshot_id"


def predictions_folder(lake_root: str, scoring_id: str) -> str:
    """Where one scoring run writes its Parquet files before they are published."""
    return f"{table_location(lake_root, TABLE)}/data/{scoring_id}"


def predictions_table(catalog: Catalog, lake_root: str) -> Table | None:
    """The published table, or None before the first `training.predict`."""
    try:
        return load_mart(catalog, lake_root, TABLE)
    except LakeError:
        if catalog.table_exists((NAMESPACE, TABLE)):
            raise  # it exists, but elsewhere: load_mart's message says so
        return None


def publish_predictions(
    catalog: Catalog,
    lake_root: str,
    folder: str,
    model_name: str,
    model_version: str,
    scored_snapshot_id: int | None,
) -> int:
    """Make the Parquet files under `folder` the rows of (model_name, model_version).

    One commit deletes that version's published files and adds these; returns its snapshot id.
    """
    files = list_data_files(folder)
    if not files:
        raise LakeError(f"no Parquet files under {folder}: nothing to publish")
    table = ensure_table(catalog, lake_root, TABLE, SCHEMA, PARTITION)
    properties = {MODEL_PROPERTY: f"{model_name}/{model_version}"}
    if scored_snapshot_id is not None:
        properties[SCORED_PROPERTY] = str(scored_snapshot_id)
    fields = [field.name for field in table.spec().fields]
    ours = {"model_name": model_name, "model_version": model_version}

    def commit(table: Table) -> int:
        with table.transaction() as transaction:
            new_files = data_files_of(table, transaction, files)
            producer = transaction.update_snapshot(snapshot_properties=properties).overwrite()
            with producer:
                for data_file in main_data_files(table):
                    values = {name: data_file.partition[i] for i, name in enumerate(fields)}
                    if all(values.get(key) == value for key, value in ours.items()):
                        producer.delete_data_file(data_file)
                for data_file in new_files:
                    producer.append_data_file(data_file)
        return producer.snapshot_id

    # Another `training.predict` committing first: done again on the table as it now is, so
    # the files deleted are those of this version that are published now.
    try:
        snapshot_id = retry_conflicts(lambda: commit(table.refresh()))
    except (CommitFailedException, ValueError) as error:
        if not is_commit_conflict(error):
            raise
        raise LakeError(
            f"{NAMESPACE}.{TABLE} kept changing while publishing ({error}) — other "
            "`training.predict` runs published meanwhile; run it again"
        ) from error
    return snapshot_id
