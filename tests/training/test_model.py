"""training.model: masked batch norm, exact weighted RMSE, fitting, export, divergence."""

from __future__ import annotations

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from scripts.synthetic_lake import NOISE_STD
from training.data import DataConfig, ShuffleEachEpoch, TripDataModule
from training.lake import FEATURES
from training.model import FareRegressor, MaskedBatchNorm1d, WeightedRMSE, export_predictor


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def model_for(datamodule: TripDataModule, **kwargs) -> FareRegressor:
    stats = datamodule.stats
    return FareRegressor(
        feature_mean=stats.mean, feature_std=stats.std, label_mean=stats.label_mean, **kwargs
    )


def test_masked_batch_norm_ignores_padding_rows():
    torch.manual_seed(0)
    x = torch.randn(10, 4) * 3 + 1
    weight = torch.tensor([1.0] * 6 + [0.0] * 4)
    x[6:] = 0.0  # padding rows
    masked, plain = MaskedBatchNorm1d(4), torch.nn.BatchNorm1d(4)
    out_masked = masked(x, weight)
    out_plain = plain(x[:6])
    torch.testing.assert_close(out_masked[:6], out_plain)
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
    # A batch with one real row does not fail and leaves the running statistics alone.
    before = masked.running_var.clone()
    masked(x, torch.tensor([1.0] + [0.0] * 9))
    torch.testing.assert_close(masked.running_var, before)


def test_weighted_rmse_is_exact_over_real_rows():
    rng = np.random.default_rng(0)
    errors = rng.normal(size=(5, 64))
    weights = (rng.random((5, 64)) > 0.3).astype(np.float32)
    metric = WeightedRMSE()
    for e, w in zip(errors, weights, strict=True):
        metric.update(torch.tensor(e**2, dtype=torch.float32), torch.tensor(w))
    expected = np.sqrt((errors[weights > 0] ** 2).mean())
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_model_fits_the_known_fare_function(fare_lake):
    datamodule = TripDataModule(DataConfig(data=str(fare_lake), batch_size=128, seed=0))
    L.seed_everything(0, verbose=False)
    model = model_for(datamodule, hidden_sizes=(64, 64), lr=3e-3)
    trainer = quiet_trainer(max_epochs=12, gradient_clip_val=1.0, callbacks=[ShuffleEachEpoch()])
    trainer.fit(model, datamodule=datamodule)
    (result,) = trainer.test(model, datamodule=datamodule, verbose=False)
    test_fares = (
        pq.read_table(fare_lake / "data" / "build-1" / "split=test")
        .column("fare_amount")
        .to_numpy()
    )
    # Far better than predicting the mean, and within 2.5x of the noise floor.
    assert result["test_rmse"] < 0.3 * test_fares.std()
    assert result["test_rmse"] < 2.5 * NOISE_STD


def test_exported_predictor_takes_raw_features(fare_lake):
    datamodule = TripDataModule(DataConfig(data=str(fare_lake), batch_size=256))
    model = model_for(datamodule, hidden_sizes=(16, 8), dropout=0.2)
    quiet_trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=1).fit(
        model, datamodule=datamodule
    )
    raw = pq.read_table(
        fare_lake / "data" / "build-1" / "split=test", columns=list(FEATURES)
    ).to_pandas()
    raw = torch.tensor(raw.to_numpy(), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        expected = model((raw - model.feature_mean) / model.feature_std)
        got = export_predictor(model)(raw)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)


def test_divergence_raises_instead_of_training_on(fare_lake):
    datamodule = TripDataModule(DataConfig(data=str(fare_lake), batch_size=256))
    model = model_for(datamodule, optimizer="sgd", lr=1e12, batch_norm=False)
    with pytest.raises(FloatingPointError, match="diverged"):
        quiet_trainer(max_epochs=3).fit(model, datamodule=datamodule)
