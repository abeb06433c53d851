"""The README's main path on real outputs: generate, `dbt build`, then train and tune."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import mlflow
import pytest

from tests.conftest import DbtProject, generate_raw
from tests.pipeline.outputs import current_build, read_mart
from training import train, tune

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lake(tmp_path_factory, request):
    project = DbtProject(tmp_path_factory.mktemp("e2e"), request.config.getoption("--dbt-target"))
    generate_raw(project.raw, rows=40_000, months="2017-01:2017-04")
    project.build()
    return project


def _common_argv(project: DbtProject, tmp_path) -> list[str]:
    return [
        "--data", str(project.lake / "trip_features"),
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--max-epochs", "2",
    ]  # fmt: skip


def test_train_and_tune_read_what_dbt_build_wrote(lake, tmp_path):
    invocation_id = json.loads((lake.root / "dbt_target" / "run_results.json").read_text())[
        "metadata"
    ]["invocation_id"]
    # The build dbt published is the one the lake serves, and the one every run records.
    assert current_build(lake.lake).invocation_id == invocation_id
    rows = {
        split: sum(1 for row in read_mart(lake.lake, "trip_features") if row["split"] == split)
        for split in ("train", "validation")
    }

    assert train.main(_common_argv(lake, tmp_path)) == 0
    tune_argv = [
        *_common_argv(lake, tmp_path),
        "--n-trials", "2",
        "--storage", str(tmp_path / "optuna.journal"),
        "--study-name", "e2e",
    ]  # fmt: skip
    assert tune.main(tune_argv) == 0

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) >= 4  # one train run, one study parent, two trials
    # The build's dbt artifacts, recorded in the lake: the manifest dbt wrote for it when it
    # started (dbt rewrites the target's at the end, with compiled SQL: same nodes) and how its
    # tests ended (dbt's own count of test statuses in the target's run_results.json).
    manifest = (lake.lake / "_builds" / invocation_id / "manifest.json").read_bytes()
    final = json.loads((lake.root / "dbt_target" / "manifest.json").read_text())
    assert json.loads(manifest)["metadata"]["invocation_id"] == invocation_id
    assert json.loads(manifest)["nodes"].keys() == final["nodes"].keys()
    results = json.loads((lake.root / "dbt_target" / "run_results.json").read_text())["results"]
    tested = ("test.", "unit_test.")
    statuses = Counter(r["status"] for r in results if r["unique_id"].startswith(tested))
    for run in runs:
        tags = run.data.tags
        assert tags["dbt.invocation_id"] == invocation_id
        assert tags["dbt.manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
        assert tags["dbt.tests"] == ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        assert tags["dbt.artifacts"].endswith(f"/_builds/{invocation_id}")
        assert tags["data.train.rows"] == str(rows["train"])
        assert tags["data.validation.rows"] == str(rows["validation"])
    champion = mlflow.MlflowClient().get_model_version_by_alias("dc-taxi-fare", "champion")
    assert champion.run_id in {run.info.run_id for run in runs}
