"""Batches of trip_features for training: streamed from Parquet, or held resident on the device.

Every batch is a tuple `(x, y, w)`: `x` float32 [B, 8] features normalised with the train-split
feature_stats, `y` float32 [B] fare in dollars, `w` float32 [B] 1 for a real row and 0 for padding.

One epoch is planned from Parquet footers alone: the row groups are put in a seeded order
(a new one each epoch), laid end to end, and cut into `world_size * num_workers` contiguous,
equal (±1 row) shards. Every shard yields the same number of batches, padding its last ones
with zero-weight rows, so every row is seen exactly once, every rank runs the same number of
steps, and weighted sums give exact metrics. Rank and worker agree on the plan without talking.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.lake import (
    FEATURES,
    LABEL,
    FeatureStats,
    LakeError,
    SplitFiles,
    discover_split,
    load_feature_stats,
    sibling,
)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
BYTES_PER_ROW = 4 * (len(FEATURES) + 1)


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how it is batched."""

    data: str = "data/lake/trip_features"
    stats: str | None = None  # default: <data>/../feature_stats
    batch_size: int = 4096
    eval_batch_size: int | None = None  # default: batch_size
    num_workers: int = 0
    seed: int = 42
    shuffle_buffer_rows: int = 1 << 18
    resident_max_bytes: int = 1 << 30  # a split this small is held on the device; 0 = stream

    @property
    def stats_uri(self) -> str:
        return self.stats or sibling(self.data, "feature_stats")


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of one row group of one file."""

    part: int
    row_group: int
    start: int
    stop: int


def epoch_order(num_row_groups: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order in which an epoch lays out the row groups; the same on every rank and worker."""
    if not shuffle:
        return np.arange(num_row_groups)
    return np.random.default_rng((seed, epoch, 0)).permutation(num_row_groups)


def shard_bounds(total_rows: int, shard: int, num_shards: int) -> tuple[int, int]:
    """The contiguous [lo, hi) slice of the epoch's rows that belongs to one shard."""
    return shard * total_rows // num_shards, (shard + 1) * total_rows // num_shards


def batches_per_shard(total_rows: int, num_shards: int, batch_size: int) -> int:
    """Batches every shard yields: enough for the largest shard, so all shards yield the same."""
    return math.ceil(math.ceil(total_rows / num_shards) / batch_size)


def plan_shard(
    row_counts: Sequence[int], order: Sequence[int], shard: int, num_shards: int
) -> list[tuple[int, int, int]]:
    """The (row group, start, stop) pieces of one shard, from row counts alone.

    Args:
        row_counts: rows in each row group.
        order: the epoch's row-group order (from `epoch_order`).
        shard: this shard's index, `rank * num_workers + worker`.
        num_shards: `world_size * num_workers`.
    """
    lo, hi = shard_bounds(sum(row_counts), shard, num_shards)
    pieces, offset = [], 0
    for group in order:
        rows = row_counts[group]
        start, stop = max(lo, offset), min(hi, offset + rows)
        if start < stop:
            pieces.append((int(group), start - offset, stop - offset))
        offset += rows
        if offset >= hi:
            break
    return pieces


def table_to_arrays(table, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrow columns -> normalised float32 features [n, 8] and float32 labels [n].

    Each column is viewed as NumPy without a copy and normalised in float64 (longitudes near
    -77 keep their precision) straight into its float32 slot.
    """
    features = np.empty((table.num_rows, len(FEATURES)), dtype=np.float32)
    scratch = np.empty(table.num_rows, dtype=np.float64)
    for i, name in enumerate(FEATURES):
        np.subtract(table.column(name).to_numpy(), mean[i], out=scratch)
        scratch /= std[i]
        features[:, i] = scratch
    labels = table.column(LABEL).to_numpy().astype(np.float32)
    return features, labels


def pad_batch(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Batch:
    """A full-size batch: the given rows first, then zero rows of weight 0."""
    n = x.shape[0]
    if n == batch_size:
        return x, y, torch.ones(batch_size, device=x.device)
    x_full = torch.zeros(batch_size, x.shape[1], device=x.device)
    y_full = torch.zeros(batch_size, device=x.device)
    w_full = torch.zeros(batch_size, device=x.device)
    x_full[:n], y_full[:n], w_full[:n] = x, y, 1.0
    return x_full, y_full, w_full


class ParquetBatches(IterableDataset):
    """One split streamed from Parquet row group by row group, sharded and padded.

    Rank and world size come from the caller (the DataModule reads them from the Trainer);
    the worker comes from the DataLoader, or from `worker_id` to drive one shard by hand.
    Memory per worker is bounded by the shuffle buffer plus one row group, whatever the size
    of the split.
    """

    def __init__(
        self,
        files: SplitFiles,
        stats: FeatureStats,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        worker_id: int | None = None,
        shuffle_buffer_rows: int = 1 << 18,
    ):
        super().__init__()
        self.files = files
        self.mean, self.std = stats.arrays()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = max(num_workers, 1)
        self.worker_id = worker_id
        self.buffer_rows = max(shuffle_buffer_rows, batch_size)
        self.row_groups = files.row_groups()
        self.num_shards = self.world_size * self.num_workers
        self.shard_batches = batches_per_shard(files.num_rows, self.num_shards, batch_size)
        # Shared memory, so persistent DataLoader workers see the epoch the trainer sets.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        """Batches per rank (all workers of the rank together)."""
        return self.shard_batches * self.num_workers

    def _shard(self) -> int:
        info = get_worker_info()
        if info is not None and info.num_workers != self.num_workers:
            raise RuntimeError(
                f"dataset planned for {self.num_workers} workers but the DataLoader has "
                f"{info.num_workers}; pass the same num_workers to both"
            )
        worker = self.worker_id if self.worker_id is not None else (info.id if info else 0)
        return self.rank * self.num_workers + worker

    def pieces(self, epoch: int, shard: int) -> list[Piece]:
        """The row-group pieces that one shard reads in one epoch."""
        order = epoch_order(len(self.row_groups), self.seed, epoch, self.shuffle)
        counts = [rows for _, _, rows in self.row_groups]
        return [
            Piece(*self.row_groups[group][:2], start, stop)
            for group, start, stop in plan_shard(counts, order, shard, self.num_shards)
        ]

    def __iter__(self) -> Iterator[Batch]:
        epoch, shard = int(self._epoch), self._shard()
        rng = np.random.default_rng((self.seed, epoch, 1, shard))
        emitted = 0
        for x, y in self._chunks(self.pieces(epoch, shard), rng):
            for start in range(0, len(y), self.batch_size):
                stop = start + self.batch_size
                xb, yb = torch.from_numpy(x[start:stop]), torch.from_numpy(y[start:stop])
                yield pad_batch(xb, yb, self.batch_size)
                emitted += 1
        empty_x, empty_y = torch.zeros(0, len(FEATURES)), torch.zeros(0)
        for _ in range(emitted, self.shard_batches):
            yield pad_batch(empty_x, empty_y, self.batch_size)

    def _chunks(
        self, pieces: list[Piece], rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Shuffled chunks of whole batches; the last chunk carries the leftover rows."""
        pending: list[tuple[np.ndarray, np.ndarray]] = []
        pending_rows = 0
        for x, y in read_pieces(self.files, pieces, self.mean, self.std):
            pending.append((x, y))
            pending_rows += len(y)
            if pending_rows >= self.buffer_rows:
                x, y = self._mix(pending, rng)
                full = len(y) - len(y) % self.batch_size
                yield x[:full], y[:full]
                # Copy the remainder so the big chunk can be freed.
                pending, pending_rows = [(x[full:].copy(), y[full:].copy())], len(y) - full
        if pending_rows:
            yield self._mix(pending, rng)

    def _mix(
        self, chunk: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([x for x, _ in chunk]) if len(chunk) > 1 else chunk[0][0]
        y = np.concatenate([y for _, y in chunk]) if len(chunk) > 1 else chunk[0][1]
        if not self.shuffle:
            return x, y
        order = rng.permutation(len(y))
        return x[order], y[order]


def read_pieces(
    files: SplitFiles, pieces: Sequence[Piece], mean: np.ndarray, std: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode each piece: only the 9 needed columns of one row group at a time."""
    columns = [*FEATURES, LABEL]
    open_files: dict[int, pq.ParquetFile] = {}
    try:
        for piece in pieces:
            path = files.parts[piece.part].path
            if piece.part not in open_files:
                handle = files.filesystem.open_input_file(path)
                open_files[piece.part] = pq.ParquetFile(handle, pre_buffer=True)
            table = open_files[piece.part].read_row_group(piece.row_group, columns=columns)
            table = table.slice(piece.start, piece.stop - piece.start)
            check_no_nulls(table, path)
            yield table_to_arrays(table, mean, std)
    finally:
        for parquet_file in open_files.values():
            parquet_file.close()


def check_no_nulls(table, where: str) -> None:
    nulls = [name for name in table.column_names if table.column(name).null_count]
    if nulls:
        raise LakeError(
            f"{where} has nulls in {', '.join(nulls)} — trip_features must not; rerun `dbt build`"
        )


class ResidentBatches:
    """One split held as tensors on one device and shuffled there each epoch.

    For splits that fit a byte budget: no decoding after the first load and no host-to-device
    copies. Rows are sharded across ranks like `ParquetBatches` (contiguous equal slices of the
    epoch's permutation, padded to the same batch count).
    """

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.features, self.labels = features, labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    @classmethod
    def load(
        cls, files: SplitFiles, stats: FeatureStats, device: torch.device, **kwargs
    ) -> ResidentBatches:
        """Read a whole split once, in file order, straight into preallocated arrays."""
        features = np.empty((files.num_rows, len(FEATURES)), dtype=np.float32)
        labels = np.empty(files.num_rows, dtype=np.float32)
        pieces = [Piece(part, group, 0, rows) for part, group, rows in files.row_groups()]
        offset = 0
        for x, y in read_pieces(files, pieces, *stats.arrays()):
            features[offset : offset + len(y)], labels[offset : offset + len(y)] = x, y
            offset += len(y)
        return cls(
            torch.from_numpy(features).to(device), torch.from_numpy(labels).to(device), **kwargs
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return batches_per_shard(len(self.labels), self.world_size, self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        lo, hi = shard_bounds(len(self.labels), self.rank, self.world_size)
        index = None
        if self.shuffle:
            device = self.labels.device
            seed = int(np.random.SeedSequence((self.seed, self.epoch, 2)).generate_state(1)[0])
            generator = torch.Generator(device=device).manual_seed(seed)
            index = torch.randperm(len(self.labels), generator=generator, device=device)[lo:hi]
        for k in range(len(self)):
            start = min(lo + k * self.batch_size, hi)
            stop = min(start + self.batch_size, hi)
            if index is None:
                x, y = self.features[start:stop], self.labels[start:stop]
            else:
                rows = index[start - lo : stop - lo]
                x, y = self.features[rows], self.labels[rows]
            yield pad_batch(x, y, self.batch_size)


class TripDataModule(L.LightningDataModule):
    """train / validation / test loaders over `<data>/split=<name>/*.parquet`."""

    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config
        self.loaders: dict[str, DataLoader | ResidentBatches] = {}
        self._stats: FeatureStats | None = None

    @property
    def stats(self) -> FeatureStats:
        if self._stats is None:
            self._stats = load_feature_stats(self.config.stats_uri)
        return self._stats

    def setup(self, stage: str) -> None:
        splits = {
            "fit": ("train", "validation"),
            "validate": ("validation",),
            "test": ("test",),
            "predict": ("test",),
        }[stage]
        for split in splits:
            if split not in self.loaders:
                self.loaders[split] = self.build_loader(split)

    def build_loader(self, split: str) -> DataLoader | ResidentBatches:
        """A loader for one split: resident on the device when it fits the budget, else streamed."""
        config = self.config
        files = discover_split(config.data, split)
        if files.num_rows == 0:
            raise LakeError(f"{files.uri} has no rows — check the dbt split fractions")
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        train = split == "train"
        batch_size = config.batch_size if train else config.eval_batch_size or config.batch_size
        common = dict(shuffle=train, seed=config.seed, rank=rank, world_size=world_size)
        if files.num_rows * BYTES_PER_ROW <= config.resident_max_bytes:
            return ResidentBatches.load(files, self.stats, device, batch_size=batch_size, **common)
        dataset = ParquetBatches(
            files,
            self.stats,
            batch_size,
            num_workers=config.num_workers,
            shuffle_buffer_rows=config.shuffle_buffer_rows,
            **common,
        )
        workers, is_s3 = config.num_workers, config.data.startswith("s3://")
        return DataLoader(
            dataset,
            batch_size=None,  # the dataset yields whole batches
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            # The AWS SDK inside pyarrow is not fork-safe once used.
            multiprocessing_context="spawn" if workers and is_s3 else None,
        )

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the training split for `epoch` (reaches persistent workers too)."""
        loader = self.loaders.get("train")
        if isinstance(loader, DataLoader):
            loader.dataset.set_epoch(epoch)
        elif loader is not None:
            loader.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader | ResidentBatches:
        if self.trainer is not None:  # resuming from a checkpoint starts mid-run
            self.set_epoch(self.trainer.current_epoch)
        return self.loaders["train"]

    def val_dataloader(self) -> DataLoader | ResidentBatches:
        return self.loaders["validation"]

    def test_dataloader(self) -> DataLoader | ResidentBatches:
        return self.loaders["test"]


class ShuffleEachEpoch(L.Callback):
    """Tell the data module which epoch starts, before its loaders are iterated."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.datamodule.set_epoch(trainer.current_epoch)
