"""Where a model came from: the dbt invocation, the Parquet files and rows, the git commit."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from training.lake import SplitFiles


@dataclass(frozen=True)
class Lineage:
    """Tags to put on every MLflow run, and the file list to attach as an artifact."""

    tags: dict[str, str]
    files: list[dict] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps({"tags": self.tags, "files": self.files}, indent=2)


def dbt_tags(target_dir: Path) -> dict[str, str]:
    """Invocation id and artifact checksums of the last `dbt build`, if its target/ is here."""
    tags: dict[str, str] = {}
    run_results = target_dir / "run_results.json"
    manifest = target_dir / "manifest.json"
    if run_results.is_file():
        metadata = json.loads(run_results.read_text()).get("metadata", {})
        tags["dbt.invocation_id"] = str(metadata.get("invocation_id"))
        tags["dbt.generated_at"] = str(metadata.get("generated_at"))
    if manifest.is_file():
        data = manifest.read_bytes()
        tags["dbt.manifest_sha256"] = hashlib.sha256(data).hexdigest()
        tags.setdefault(
            "dbt.invocation_id", str(json.loads(data).get("metadata", {}).get("invocation_id"))
        )
    return tags or {"dbt.invocation_id": "unknown (no dbt target/ artifacts found)"}


def git_tags() -> dict[str, str]:
    """The commit of the working tree, and whether it has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"git.commit": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(git("status", "--porcelain")))}


def collect_lineage(data_uri: str, splits: dict[str, SplitFiles], dbt_target: Path) -> Lineage:
    """Lineage of one training dataset: dbt, git, and every Parquet file with its row count."""
    tags = {"data.uri": data_uri, **dbt_tags(dbt_target), **git_tags()}
    files = []
    for split, split_files in splits.items():
        tags[f"data.{split}.rows"] = str(split_files.num_rows)
        tags[f"data.{split}.files"] = str(len(split_files.parts))
        files += [
            {"split": split, "path": part.path, "rows": sum(part.row_group_rows)}
            for part in split_files.parts
        ]
    return Lineage(tags=tags, files=files)
