"""`training.train` on two DDP processes, and killed mid-run then resumed from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L
import mlflow
import pytest
import torch

from tests.scaleout.conftest import finish, start_cli, wait_for
from training.data import DataConfig, TripDataModule
from training.model import FareRegressor

pytestmark = pytest.mark.slow


def train_argv(lake: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--data", str(lake),
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--accelerator", "cpu",
        "--hidden-sizes", "32,16",
        "--no-progress",
        "-v",  # Lightning's lines about DDP and restored checkpoints
        *extra,
    ]  # fmt: skip


def result_of(output: str) -> dict[str, float]:
    """The JSON line `training.train` prints last."""
    return json.loads(output.strip().splitlines()[-1])


def val_history(run_id: str) -> list[tuple[int, float]]:
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_rmse")
    return sorted((metric.step, metric.value) for metric in history)


def test_ddp_on_two_cpu_processes_reports_the_exact_validation_rmse(small_lake, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    argv = train_argv(
        small_lake, tmp_path,
        "--devices", "2", "--strategy", "ddp", "--max-epochs", "1", "--batch-size", "512",
        "--checkpoint-dir", str(checkpoints),
    )  # fmt: skip
    log = tmp_path / "ddp.log"
    output = finish(start_cli("training.train", argv, log), log)
    assert "distributed_backend=gloo" in output and "Starting with 2 processes" in output
    result = result_of(output)
    assert output.count('"best_val_rmse"') == 1  # one result line, from rank 0

    # Each rank saw half of the validation rows; the logged RMSE must be the one over all of
    # them, which one process evaluating the same weights gets.
    model = FareRegressor.load_from_checkpoint(checkpoints / "best.ckpt", map_location="cpu")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    datamodule = TripDataModule(DataConfig(data=str(small_lake), batch_size=512))
    (single,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    assert result["best_val_rmse"] == pytest.approx(single["val_rmse"], rel=1e-9)

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["dc-taxi"], output_format="list")
    assert run.info.status == "FINISHED"  # one tracked run, not one per rank
    assert run.data.params["devices"] == "2" and run.data.params["strategy"] == "ddp"
    assert val_history(run.info.run_id) == [(0, pytest.approx(single["val_rmse"], rel=1e-9))]


def test_training_killed_mid_run_resumes_to_the_same_result(long_lake, tmp_path):
    # Dropout on: the resumed run must also draw the same dropout masks.
    common = train_argv(
        long_lake, tmp_path,
        "--max-epochs", "3", "--patience", "5", "--batch-size", "256", "--dropout", "0.2",
        "--seed", "7",
    )  # fmt: skip
    log = tmp_path / "straight.log"
    straight_dir = tmp_path / "straight"
    straight = start_cli("training.train", [*common, "--checkpoint-dir", str(straight_dir)], log)
    expected = result_of(finish(straight, log))

    checkpoints = tmp_path / "interrupted"
    log = tmp_path / "interrupted.log"
    victim = start_cli("training.train", [*common, "--checkpoint-dir", str(checkpoints)], log)

    def first_epoch_saved() -> bool:
        last = checkpoints / "last.ckpt"
        try:
            return torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
        except Exception:  # not there yet, or being written
            return False

    wait_for(first_epoch_saved, 240, "the first epoch's checkpoint")
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert '"best_val_rmse"' not in log.read_text()  # it really did not finish

    log = tmp_path / "resumed.log"
    resumed_argv = [*common, "--checkpoint-dir", str(checkpoints), "--resume"]
    output = finish(start_cli("training.train", resumed_argv, log), log)
    assert "Restored all states from the checkpoint" in output
    assert result_of(output) == expected  # bit for bit: same seed, same epochs, same masks

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["dc-taxi"], output_format="list")
    assert len(runs) == 2  # the resumed attempt continued the interrupted run
    interrupted_id = (checkpoints / "mlflow_run_id").read_text()
    (resumed,) = [r for r in runs if r.info.run_id == interrupted_id]
    (uninterrupted,) = [r for r in runs if r.info.run_id != interrupted_id]
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resumed"] == "true"
    assert val_history(resumed.info.run_id) == val_history(uninterrupted.info.run_id)


def test_an_existing_checkpoint_dir_needs_resume(small_lake, tmp_path, capsys):
    from training import train

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last.ckpt").write_bytes(b"")
    argv = train_argv(small_lake, tmp_path, "--checkpoint-dir", str(checkpoints))
    assert train.main(argv) == 2
    assert "pass --resume to continue that run" in capsys.readouterr().err
    assert train.main(train_argv(small_lake, tmp_path, "--resume")) == 2
    assert "--resume needs the --checkpoint-dir" in capsys.readouterr().err
