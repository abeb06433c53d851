"""A build's dbt artifacts, kept in the lake beside the data they describe.

`dbt_project/target/run_results.json` describes whichever dbt command ran last in that checkout
(a later `dbt docs generate` or `dbt run -s x` replaces it), and is not on the machine that
trains. So at publish time the build records, under `<lake>/_builds/<invocation id>/`:

- `run_results.json`: dbt's run_results format, for the nodes that ran in this build (status,
  failures, message, time), with `metadata.manifest_sha256` added;
- `manifest.json`: the exact manifest dbt wrote when the build started (its `invocation_id`
  is checked; not copied when it is another's), so the tests' definitions can be read
  without the project checkout.

They are written before the catalog commit that publishes the build, so every published
build has them; a build that then fails to publish leaves only this small folder behind.
Readers find them from the build's invocation id (`PinnedBuild.invocation_id`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path

import pyarrow.fs as pafs

from lakehouse.catalog import filesystem_of, lake_uri

BUILDS_FOLDER = "_builds"
RUN_RESULTS = "run_results.json"
MANIFEST = "manifest.json"


def artifacts_uri(lake_root: str, invocation_id: str) -> str:
    """`<lake>/_builds/<invocation id>`: where one build's dbt artifacts live."""
    return f"{lake_uri(lake_root)}/{BUILDS_FOLDER}/{invocation_id}"


def _write(uri: str, data: bytes) -> None:
    filesystem, path = filesystem_of(uri)
    filesystem.create_dir(posixpath.dirname(path), recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


def _read(uri: str) -> bytes | None:
    filesystem, path = filesystem_of(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def write_artifact(lake_root: str, invocation_id: str, name: str, text: str) -> None:
    """One more file of a build's artifacts (e.g. the raw files it read)."""
    _write(f"{artifacts_uri(lake_root, invocation_id)}/{name}", text.encode())


def record_build(lake_root: str, invocation_id: str, run_results: dict, manifest: Path) -> str:
    """Write this build's run results and manifest into the lake; where they went.

    Only the manifest dbt wrote for this invocation is copied (none is with `--no-write-json`):
    another would describe another build.
    """
    data = manifest.read_bytes() if manifest.is_file() else b""
    written_by = json.loads(data).get("metadata", {}).get("invocation_id") if data else None
    folder = artifacts_uri(lake_root, invocation_id)
    metadata = run_results.setdefault("metadata", {})
    if written_by == invocation_id:
        metadata["manifest_sha256"] = hashlib.sha256(data).hexdigest()
        _write(f"{folder}/{MANIFEST}", data)
        said = folder
    else:
        said = f"{folder} (without a manifest: {manifest} is not this build's)"
    _write(f"{folder}/{RUN_RESULTS}", json.dumps(run_results, indent=1).encode())
    return said


def read_artifact(lake_root: str, invocation_id: str, name: str) -> dict | None:
    """One artifact (RUN_RESULTS or MANIFEST) of a build; None for a build that has none (built
    before artifacts were recorded, or on Athena)."""
    data = _read(f"{artifacts_uri(lake_root, invocation_id)}/{name}")
    return json.loads(data) if data is not None else None
