"""Training throughput (samples/s) of the same model fed four ways.

    python benchmarks/bench_training.py      # GPU: 20 M rows, batch 2^16..2^20
                                             # CPU: 1 M rows, batch 2^12, 2^14, 2^16
    python benchmarks/bench_training.py --rows 1000000 --log2-batch 12 14 16 --threads 1

Cases, per batch size (each timed over its last epoch, after a warm-up epoch):

  lightning_stream   Lightning Trainer + TripDataModule streaming Parquet (ParquetBatches in a
                     DataLoader, pinned memory, non-blocking copies)
  manual_stream      a hand-written PyTorch loop fed by that same DataLoader
  lightning_resident the whole pipeline in its fast mode: Lightning + TripDataModule holding the
                     split on the device (ResidentBatches, shuffled there)
  manual_resident    a hand-written loop over device-resident tensors (randperm + index): the
                     ceiling for this model

Same model everywhere (FareRegressor, hidden 256-128-64 with batch norm, AdamW, grad clip 1.0,
bf16 autocast on a GPU); data is the synthetic trip_features of bench_loader.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from pathlib import Path

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_loader import generate  # noqa: E402
from training.data import DataConfig, ResidentBatches, TripDataModule  # noqa: E402
from training.lake import discover_split, load_feature_stats  # noqa: E402
from training.model import FareRegressor  # noqa: E402

CASES = ("lightning_stream", "manual_stream", "lightning_resident", "manual_resident")
HIDDEN = (256, 128, 64)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def new_model(stats) -> FareRegressor:
    torch.manual_seed(0)
    return FareRegressor(
        hidden_sizes=HIDDEN,
        lr=1e-3,
        feature_mean=stats.mean,
        feature_std=stats.std,
        label_mean=stats.label_mean,
    )


class EpochTimer(L.Callback):
    """Wall time of each training epoch, with the device synchronised at both ends."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self.seconds.append(time.perf_counter() - self.start)


def lightning_epoch(config: DataConfig, stats, device, epochs: int) -> float:
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        precision="bf16-mixed" if device.type == "cuda" else "32-true",
        max_epochs=epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(new_model(stats), datamodule=TripDataModule(config))
    return timer.seconds[-1]


def manual_epochs(batches, model, device, epochs: int) -> float:
    """The textbook loop; `batches()` gives one epoch of (x, y, w) batches."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    model.train()
    for _ in range(epochs):
        synchronize(device)
        start = time.perf_counter()
        for x, y, w in batches():
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            w = w.to(device, non_blocking=True)
            with autocast:
                prediction = model(x, w)
            loss = (w * (prediction.float() - y) ** 2).sum() / w.sum().clamp_min(1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        synchronize(device)
        seconds = time.perf_counter() - start
    return seconds


def resident_tensor_batches(data: Path, stats, device, batch_size: int):
    """Plain device tensors and a randperm per epoch: no padding, no weights to speak of."""
    loaded = ResidentBatches.load(
        discover_split(str(data), "train"), stats, device, batch_size=batch_size, shuffle=False
    )
    features, labels = loaded.features, loaded.labels
    ones = torch.ones(batch_size, device=device)

    def batches():
        order = torch.randperm(len(labels), device=device)
        for start in range(0, len(labels), batch_size):
            rows = order[start : start + batch_size]
            yield features[rows], labels[rows], ones[: len(rows)]

    return batches


def run_case(case: str, data: Path, batch_size: int, args, device) -> float:
    """Seconds for the last of `args.epochs` epochs."""
    stats = load_feature_stats(str(data.parent / "feature_stats"))
    streamed = DataConfig(
        data=str(data),
        batch_size=batch_size,
        num_workers=args.num_workers,
        resident_max_bytes=0,
    )
    resident = DataConfig(data=str(data), batch_size=batch_size, resident_max_bytes=1 << 40)
    if case == "lightning_stream":
        return lightning_epoch(streamed, stats, device, args.epochs)
    if case == "lightning_resident":
        return lightning_epoch(resident, stats, device, args.epochs)
    model = new_model(stats).to(device)
    if case == "manual_stream":
        loader = TripDataModule(streamed).build_loader("train", device=device)
        return manual_epochs(lambda: loader, model, device, args.epochs)
    return manual_epochs(
        resident_tensor_batches(data, stats, device, batch_size), model, device, args.epochs
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="train rows (default: 20 M on GPU, 1 M on CPU)")
    parser.add_argument(
        "--log2-batch", type=int, nargs="+", help="default: 16..20 on GPU, 12 14 16 on CPU"
    )
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--epochs", type=int, default=2, help="timed: the last one")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=max(1, min(8, (os.cpu_count() or 2) // 2)),
        help="DataLoader workers for the streamed cases",
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bench" / "loader")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    args.rows = args.rows or (20_000_000 if gpu else 1_000_000)
    args.log2_batch = args.log2_batch or ([16, 17, 18, 19, 20] if gpu else [12, 14, 16])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    data = generate(args.out / f"rows_{args.rows}", args.rows, with_csv=False)
    print(f"# {args.rows:,} rows, device {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.num_workers} loader workers")  # fmt: skip
    print("| batch | case | epoch s | samples/s |")
    print("| ---: | --- | ---: | ---: |")
    for log2 in args.log2_batch:
        for case in args.cases:
            seconds = run_case(case, data, 1 << log2, args, device)
            print(f"| 2^{log2} | {case} | {seconds:.2f} | {args.rows / seconds:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
