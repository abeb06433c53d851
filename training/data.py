"""Batches of trip_features for training: streamed from Parquet, or held resident on the device.

Every batch is a tuple `(x, y, w)`: `x` float32 [B, 8] features normalised with the train-split
feature_stats, `y` float32 [B] fare in dollars, `w` float32 [B] 1 for a real row and 0 for padding.
Which rows a DDP rank and DataLoader worker read in an epoch is decided by `training.plan`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import islice

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lakehouse.builds import PinnedBuild, parse_as_of, pin_build
from training.lake import (
    FEATURES,
    LABEL,
    FeatureStats,
    LakeError,
    SplitFiles,
    discover_split,
    load_feature_stats,
)
from training.plan import Piece, batches_per_shard, epoch_order, plan_shard, shard_bounds

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
COLUMNS = [*FEATURES, LABEL]
BYTES_PER_ROW = 4 * len(COLUMNS)
TRAINING_MARTS = ("trip_features", "feature_stats")  # what a run pins and reads


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how it is batched."""

    data: str = "data/lake/trip_features"  # trip_features' location: the lake table to read
    snapshot_id: int | None = None  # the pinned trip_features snapshot (None: current build)
    as_of: str | None = None  # ISO time: the build that was current then (time travel)
    batch_size: int = 4096
    eval_batch_size: int | None = None  # default: batch_size
    num_workers: int = 0
    seed: int = 42
    shuffle_buffer_rows: int = 1 << 18
    resident_max_bytes: int = 1 << 30  # a split this small is held on the device; 0 = stream

    def pin(self) -> tuple[DataConfig, PinnedBuild]:
        """Resolve the build to read once; the returned config names its snapshot for good."""
        build = pin_build(
            self.data, self.snapshot_id, parse_as_of(self.as_of), marts=TRAINING_MARTS
        )
        return replace(self, snapshot_id=build.snapshot_id, as_of=None), build


def normalise_into(
    table, mean: np.ndarray, std: np.ndarray, features: np.ndarray, labels: np.ndarray
) -> None:
    """Arrow columns -> normalised float32 `features` [n, 8] and float32 `labels` [n], in place.

    Each column is viewed as NumPy without a copy; the mean is subtracted in float64 (so
    longitudes near -77 keep their precision) and cast straight into its float32 slot.
    """
    for i, name in enumerate(FEATURES):
        column = table.column(name).to_numpy()
        np.subtract(column, mean[i], out=features[:, i], casting="same_kind")
    features *= (1.0 / std).astype(np.float32)
    labels[:] = table.column(LABEL).to_numpy()


def to_batch(x: np.ndarray, y: np.ndarray, batch_size: int) -> Batch:
    """NumPy rows -> (x, y, w) tensors of `batch_size` rows, padded with zero-weight rows."""
    n = len(y)
    w = np.ones(batch_size, dtype=np.float32)
    if n < batch_size:
        x = np.concatenate([x, np.zeros((batch_size - n, x.shape[1]), dtype=np.float32)])
        y = np.concatenate([y, np.zeros(batch_size - n, dtype=np.float32)])
        w[n:] = 0.0
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)


def pad_tensors(x: torch.Tensor, y: torch.Tensor, ones: torch.Tensor) -> Batch:
    """`to_batch` for tensors on a device; `ones` is a reusable all-ones weight of batch size."""
    n, batch_size = x.shape[0], len(ones)
    if n == batch_size:
        return x, y, ones
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
        for batch in self._batches(self.pieces(epoch, shard), rng):
            emitted += 1
            yield batch
        no_rows = np.zeros((0, len(FEATURES)), dtype=np.float32), np.zeros(0, dtype=np.float32)
        for _ in range(emitted, self.shard_batches):
            yield to_batch(*no_rows, self.batch_size)

    def _batches(self, pieces: list[Piece], rng: np.random.Generator) -> Iterator[Batch]:
        """The shard's rows as batches, mixed in a buffer of `buffer_rows` rows at a time."""
        # One reusable buffer: a shuffle window plus room for the row group being added.
        capacity = self.buffer_rows + max((p.stop - p.start for p in pieces), default=0)
        features = np.empty((capacity, len(FEATURES)), dtype=np.float32)
        labels = np.empty(capacity, dtype=np.float32)
        filled = 0
        for table in read_tables(self.files, pieces):
            end = filled + table.num_rows
            normalise_into(table, self.mean, self.std, features[filled:end], labels[filled:end])
            filled = end
            if filled >= self.buffer_rows:
                filled = yield from self._drain(features, labels, filled, rng, last=False)
        yield from self._drain(features, labels, filled, rng, last=True)

    def _drain(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        filled: int,
        rng: np.random.Generator,
        last: bool,
    ) -> Iterator[Batch]:
        """Yield the buffered rows as batches in a random order; keep the partial batch.

        Returns how many rows were kept (moved to the front of the buffer); with `last` the
        partial batch is padded and yielded instead.
        """
        order = rng.permutation(filled) if self.shuffle else None
        batch = self.batch_size
        full = filled if last else filled - filled % batch
        for start in range(0, full, batch):
            stop = min(start + batch, full)
            if order is None:  # copies: the buffer is reused
                x, y = features[start:stop].copy(), labels[start:stop].copy()
            else:  # rows of 8 float32 take NumPy's fast gather path
                x, y = np.take(features, order[start:stop], axis=0), labels[order[start:stop]]
            yield to_batch(x, y, batch)
        kept = filled - full
        if kept:
            rows = slice(full, filled) if order is None else order[full:filled]
            features[:kept], labels[:kept] = features[rows], labels[rows]
        return kept


class PieceReader:
    """Reads pieces of one split, keeping each file open once it has been read from."""

    def __init__(self, files: SplitFiles):
        self.files = files
        self.open_files: dict[int, pq.ParquetFile] = {}

    def read(self, piece: Piece) -> pa.Table:
        """Only the 9 needed columns of one row group, sliced to the piece."""
        path = self.files.parts[piece.part].path
        if piece.part not in self.open_files:
            handle = self.files.filesystem.open_input_file(path)
            self.open_files[piece.part] = pq.ParquetFile(handle, pre_buffer=True)
        parquet_file = self.open_files[piece.part]
        # One decoding thread per reader: the consumer's work runs beside it on another core.
        table = parquet_file.read_row_group(piece.row_group, columns=COLUMNS, use_threads=False)
        table = table.slice(piece.start, piece.stop - piece.start)
        check_no_nulls(table, path)
        return table

    def close(self) -> None:
        for parquet_file in self.open_files.values():
            parquet_file.close()


def read_tables(files: SplitFiles, pieces: Sequence[Piece], prefetch: int = 2) -> Iterator:
    """Decode the pieces in order in a background thread, `prefetch` pieces ahead."""
    reader = PieceReader(files)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-read")
    upcoming = iter(pieces)
    pending = deque(pool.submit(reader.read, piece) for piece in islice(upcoming, prefetch))
    try:
        while pending:
            table = pending.popleft().result()
            pending.extend(pool.submit(reader.read, piece) for piece in islice(upcoming, 1))
            yield table
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        reader.close()


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
        mean, std = stats.arrays()
        offset = 0
        for table in read_tables(files, pieces):
            end = offset + table.num_rows
            normalise_into(table, mean, std, features[offset:end], labels[offset:end])
            offset = end
        return cls(
            torch.from_numpy(features).to(device), torch.from_numpy(labels).to(device), **kwargs
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return batches_per_shard(len(self.labels), self.world_size, self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        lo, hi = shard_bounds(len(self.labels), self.rank, self.world_size)
        index = self.permutation()[lo:hi] if self.shuffle else None
        ones = torch.ones(self.batch_size, device=self.labels.device)
        for k in range(len(self)):
            start = min(lo + k * self.batch_size, hi)
            stop = min(start + self.batch_size, hi)
            if index is None:
                x, y = self.features[start:stop], self.labels[start:stop]
            else:
                x, y = self.gather(index[start - lo : stop - lo])
            yield pad_tensors(x, y, ones)

    def permutation(self) -> torch.Tensor:
        """The epoch's order of all rows, made on the device; the same on every rank."""
        device, n = self.labels.device, len(self.labels)
        seed = int(np.random.SeedSequence((self.seed, self.epoch, 2)).generate_state(1)[0])
        if device.type == "cpu":  # NumPy's permutation and take are several times faster there
            return torch.from_numpy(np.random.default_rng(seed).permutation(n))
        generator = torch.Generator(device=device).manual_seed(seed)
        return torch.randperm(n, generator=generator, device=device)

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.features.device.type == "cpu":
            rows_np = rows.numpy()
            return (
                torch.from_numpy(np.take(self.features.numpy(), rows_np, axis=0)),
                torch.from_numpy(np.take(self.labels.numpy(), rows_np)),
            )
        return self.features[rows], self.labels[rows]


class TripDataModule(L.LightningDataModule):
    """train / validation / test loaders over one pinned build of trip_features."""

    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config
        self.loaders: dict[str, DataLoader | ResidentBatches] = {}
        self._build: PinnedBuild | None = None
        self._stats: FeatureStats | None = None

    @property
    def build(self) -> PinnedBuild:
        """The build every loader of this module reads (resolved once)."""
        if self._build is None:
            self.config, self._build = self.config.pin()
        return self._build

    @property
    def stats(self) -> FeatureStats:
        if self._stats is None:
            self._stats = load_feature_stats(self.build)
        return self._stats

    def setup(self, stage: str) -> None:
        splits = {
            "fit": ("train", "validation"),
            "validate": ("validation",),
            "test": ("test",),
            "predict": ("test",),
        }[stage]
        trainer = self.trainer
        placement = {}
        if trainer is not None:
            placement = dict(
                rank=trainer.global_rank,
                world_size=trainer.world_size,
                device=trainer.strategy.root_device,
            )
        for split in splits:
            if split not in self.loaders:
                self.loaders[split] = self.build_loader(split, **placement)

    def build_loader(
        self,
        split: str,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device = torch.device("cpu"),  # noqa: B008 (immutable)
    ) -> DataLoader | ResidentBatches:
        """A loader for one split: resident on the device when it fits the budget, else streamed."""
        files = discover_split(self.build, split)
        config = self.config
        if files.num_rows == 0:
            raise LakeError(f"{files.uri} has no rows — check the dbt split fractions")
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
