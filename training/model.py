"""The fare regressor: an MLP in Lightning, trained on weighted batches, RMSE in dollars."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric

from training.lake import FEATURES
from training.tracking_names import TEST_RMSE, VAL_RMSE

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "plateau")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and optimisation of the regressor."""

    hidden_sizes: tuple[int, ...] = (128, 64)
    batch_norm: bool = True
    dropout: float = 0.0
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.0
    scheduler: str = "none"


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics come from the real rows only (weight > 0).

    Padding rows then change neither the batch's normalisation nor the running statistics,
    and a batch with a single real row does not fail. Evaluation is plain BatchNorm1d.
    """

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or weight is None:
            return super().forward(x)
        w = weight.float().unsqueeze(1)
        total = w.sum()
        denominator = total.clamp_min(1.0)
        xf = x.float()
        mean = (w * xf).sum(0) / denominator
        var = (w * (xf - mean) ** 2).sum(0) / denominator
        with torch.no_grad():
            # No host sync: a batch with < 2 real rows just leaves the running stats alone.
            step = self.momentum * (total > 1).float()
            self.running_mean.lerp_(mean, step)
            self.running_var.lerp_(var * total / (total - 1).clamp_min(1.0), step)
            self.num_batches_tracked.add_(1)
        out = (xf - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return out.to(x.dtype)


class WeightedRMSE(Metric):
    """sqrt(sum(w * err^2) / sum(w)), summed across ranks: exact with padded batches."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("squared_error", torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("weight", torch.zeros((), dtype=torch.float64), "sum")

    def update(self, squared_error: torch.Tensor, weight: torch.Tensor) -> None:
        self.squared_error += (squared_error.double() * weight).sum()
        self.weight += weight.double().sum()

    def compute(self) -> torch.Tensor:
        return torch.sqrt(self.squared_error / self.weight)


class FareRegressor(L.LightningModule):
    """MLP: [Linear -> (masked) BatchNorm -> ReLU -> Dropout] per hidden size, then Linear."""

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (128, 64),
        batch_norm: bool = True,
        dropout: float = 0.0,
        optimizer: str = "adamw",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        scheduler: str = "none",
        feature_mean: Sequence[float] = (0.0,) * len(FEATURES),
        feature_std: Sequence[float] = (1.0,) * len(FEATURES),
        label_mean: float = 0.0,
    ):
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        self.save_hyperparameters()
        sizes = [len(FEATURES), *hidden_sizes]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.norms = nn.ModuleList(MaskedBatchNorm1d(b) for b in sizes[1:] if batch_norm)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], 1)
        nn.init.constant_(self.head.bias, label_mean)  # start at the mean fare
        # The normalisation the data module applied, kept for exporting a raw-feature model.
        self.register_buffer("feature_mean", torch.tensor(feature_mean, dtype=torch.float32))
        self.register_buffer("feature_std", torch.tensor(feature_std, dtype=torch.float32))
        self.train_rmse = WeightedRMSE()
        self.val_rmse = WeightedRMSE()
        self.test_rmse = WeightedRMSE()

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised features [B, 8] -> fares in dollars [B]."""
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if self.norms:
                x = self.norms[i](x, weight)
            x = self.dropout(torch.relu(x))
        return self.head(x).squeeze(-1)

    def _squared_error(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, w = batch
        return (self(x, w).float() - y) ** 2, w

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        squared_error, w = self._squared_error(batch)
        loss = (squared_error * w).sum() / w.sum().clamp_min(1.0)
        self.train_rmse.update(squared_error.detach(), w)
        self.log("train_rmse", self.train_rmse, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.val_rmse.update(*self._squared_error(batch))
        self.log(VAL_RMSE, self.val_rmse, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self.test_rmse.update(*self._squared_error(batch))
        self.log(TEST_RMSE, self.test_rmse, on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        rmse = self.trainer.callback_metrics.get("train_rmse")
        if rmse is not None and not torch.isfinite(rmse):
            raise FloatingPointError(
                f"training diverged at epoch {self.current_epoch} (train RMSE {rmse.item()})"
                " — lower the learning rate or keep gradient clipping on"
            )

    def configure_optimizers(self):
        params, hp = self.parameters(), self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay
            )
        else:
            kind = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
            optimizer = kind(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "cosine":
            epochs = max(self.trainer.max_epochs or 1, 1)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        if hp.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": plateau, "monitor": VAL_RMSE},
            }
        return optimizer


def export_predictor(model: FareRegressor) -> nn.Sequential:
    """A plain-torch model from raw features [n, 8] to fares [n], for serving.

    The train-split normalisation is folded into the first Linear layer and each (evaluation
    mode) batch norm into the Linear before it, so the network is Linear -> ReLU ... -> Linear:
    loading it needs torch and nothing of ours, and it runs at the speed of its matrix products.
    """
    mean, std = model.feature_mean.cpu().double(), model.feature_std.cpu().double()
    layers: list[nn.Module] = []
    for i, linear in enumerate(model.linears):
        weight, bias = linear.weight.detach().cpu().double(), linear.bias.detach().cpu().double()
        if i == 0:  # x_normalised = (x - mean) / std
            weight = weight / std
            bias = bias - weight @ mean
        if model.norms:  # y = (z - running_mean) / sqrt(running_var + eps) * gamma + beta
            norm = model.norms[i]
            scale = norm.weight.detach().cpu().double() * torch.rsqrt(
                norm.running_var.cpu().double() + norm.eps
            )
            weight = weight * scale.unsqueeze(1)
            bias = (
                bias - norm.running_mean.cpu().double()
            ) * scale + norm.bias.detach().cpu().double()
        plain = nn.Linear(linear.in_features, linear.out_features)
        with torch.no_grad():
            plain.weight.copy_(weight.float())
            plain.bias.copy_(bias.float())
        layers += [plain, nn.ReLU()]
    head = nn.Linear(model.head.in_features, 1)
    head.load_state_dict(model.head.state_dict())
    layers += [head, nn.Flatten(0)]
    return nn.Sequential(*layers).cpu().eval()
