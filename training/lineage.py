"""Where a model came from: the pinned lake build, its Parquet files and rows, and the dbt
artifacts that build recorded beside its data (manifest checksum, how its tests ended).

The code's git commit is MLflow's own `mlflow.source.git.commit` tag: MLflow sets it when the
code runs from a git checkout; the container image, which has no git, stamps the commit it was
built from in `DC_TAXI_GIT_COMMIT` (Containerfile), and an installed copy has none (no tag, not
an error).
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset

from lakehouse.build_artifacts import RUN_RESULTS, artifacts_uri, read_artifact
from lakehouse.builds import PinnedBuild
from lakehouse.increment import read_increment
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
    tags = {
        "data.uri": data_uri,
        **build.describe(),
        **dbt_tags(build),
        **raw_tags(build),
        **code_tags(),
    }
    files = []
    for split, split_files in splits.items():
        tags[f"data.{split}.rows"] = str(split_files.num_rows)
        tags[f"data.{split}.files"] = str(len(split_files.parts))
        files += [
            {"split": split, "path": part.path, "rows": sum(part.row_group_rows)}
            for part in split_files.parts
        ]
    return Lineage(tags=tags, files=files)


def code_tags() -> dict[str, str]:
    """The commit stamped into the container image, as MLflow's own git tag; nothing elsewhere
    (MLflow tags a run started from a git checkout itself)."""
    commit = os.environ.get("DC_TAXI_GIT_COMMIT", "").strip()
    if not commit or commit == "unknown":
        return {}
    return {"mlflow.source.git.commit": commit}


def dbt_tags(build: PinnedBuild) -> dict[str, str]:
    """Where the build's dbt artifacts are, the checksum of its manifest and how its tests
    ended (`lakehouse.build_artifacts`); only the first for a build that recorded none."""
    folder = artifacts_uri(build.lake_root, build.invocation_id)
    results = read_artifact(build.lake_root, build.invocation_id, RUN_RESULTS)
    if results is None:
        return {"dbt.artifacts": f"none recorded by build {build.invocation_id}"}
    statuses = Counter(
        result["status"]
        for result in results.get("results", [])
        if result["unique_id"].split(".")[0] in ("test", "unit_test")
    )
    return {
        "dbt.artifacts": folder,
        "dbt.manifest_sha256": results.get("metadata", {}).get("manifest_sha256", ""),
        "dbt.tests": ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())),
    }


def listed(names: list[str], limit: int = 2000) -> str:
    """File names for a tag, cut short (saying how many more) past `limit` characters."""
    text = ", ".join(names)
    if len(text) <= limit:
        return text
    shown = text[:limit].rsplit(", ", 1)[0]
    return f"{shown} … (+{len(names) - shown.count(', ') - 1} more)"


def raw_tags(build: PinnedBuild) -> dict[str, str]:
    """The raw files the build read (`lakehouse.increment`): full or incremental, which files
    it added, changed, removed and re-read, and one checksum of its whole raw input."""
    record = read_increment(build.lake_root, build.invocation_id)
    if record is None:
        return {}
    tags = {
        "raw.build": record["mode"],
        "raw.files": str(len(record["files"])),
        "raw.files_sha256": record["files_sha256"],
    }
    for key in ("added", "changed", "removed", "reread"):
        tags[f"raw.{key}"] = listed(record[key])
    return tags


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
