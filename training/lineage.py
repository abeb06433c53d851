"""Where a model came from: the pinned lake build, its Parquet files and rows.

The code's git commit is MLflow's own `mlflow.source.git.commit` tag (set when the code runs
from a git checkout; absent, not an error, in an image or an installed copy).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset

from lakehouse.builds import PinnedBuild
from training.lake import SplitFiles


@dataclass(frozen=True)
class Lineage:
    """Tags to put on every MLflow run, and the file list to attach as an artifact."""

    tags: dict[str, str]
    files: list[dict] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps({"tags": self.tags, "files": self.files}, indent=2)


def collect_lineage(data_uri: str, build: PinnedBuild, splits: dict[str, SplitFiles]) -> Lineage:
    """Lineage of one training dataset: the build (snapshot, dbt invocation), every file.

    The dbt invocation id comes from the snapshot's summary, i.e. from the build that really
    wrote the data, not from whatever `dbt_project/target/` holds now.
    """
    tags = {"data.uri": data_uri, **build.describe()}
    files = []
    for split, split_files in splits.items():
        tags[f"data.{split}.rows"] = str(split_files.num_rows)
        tags[f"data.{split}.files"] = str(len(split_files.parts))
        files += [
            {"split": split, "path": part.path, "rows": sum(part.row_group_rows)}
            for part in split_files.parts
        ]
    return Lineage(tags=tags, files=files)


def log_dataset(build: PinnedBuild, lineage: Lineage) -> None:
    """Record the pinned trip_features snapshot as the active run's input dataset."""
    with warnings.catch_warnings():  # MLflow registers its local source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(f"{build.lake_root}/trip_features")
    dataset = MetaDataset(
        source=source,
        name=f"dc_taxi.trip_features@{build.snapshot_id}",
        digest=str(build.snapshot_id)[-8:],
    )
    rows = {key: value for key, value in lineage.tags.items() if key.endswith(".rows")}
    mlflow.log_input(dataset, context="training", tags=rows)
