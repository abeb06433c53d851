"""Batches of trip_features for training: streamed from Parquet, or held resident on the device.

Every batch is a tuple `(x, y, w)`: `x` float32 [B, 8] features normalised with the train-split
feature_stats, `y` float32 [B] fare in dollars, `w` float32 [B] 1 for a real row and 0 for padding.
Which rows a DDP rank and DataLoader worker read in an epoch is decided by `training.plan`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lakehouse.builds import PinnedBuild, parse_as_of, pin_build
from training.defaults import DEFAULT_DATA
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

    data: str = DEFAULT_DATA  # trip_features' location: the lake table to read
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


# Rows normalised per step: a block of float32 rows stays in cache across the 8 column passes.
NORMALISE_BLOCK_ROWS = 16_384
# Rows scaled per NumPy inner loop (see `scale_rows`).
SCALE_LINE_ROWS = 64


def normalise_into(
    table, mean: np.ndarray, std: np.ndarray, features: np.ndarray, labels: np.ndarray
) -> None:
    """Arrow columns -> normalised float32 `features` [n, 8] and float32 `labels` [n], in place.

    Each column is viewed as NumPy without a copy; the mean is subtracted in float64 (so
    longitudes near -77 keep their precision) and cast straight into its float32 slot, then the
    rows are multiplied by 1/std in float32. A block of rows at a time, so that the block stays
    in cache across the column passes.
    """
    columns = [table.column(name).to_numpy() for name in FEATURES]
    scale = np.tile((1.0 / std).astype(np.float32), SCALE_LINE_ROWS)
    for start in range(0, len(features), NORMALISE_BLOCK_ROWS):
        stop = start + NORMALISE_BLOCK_ROWS
        block = features[start:stop]
        for i, column in enumerate(columns):
            np.subtract(column[start:stop], mean[i], out=block[:, i], casting="same_kind")
        scale_rows(block, scale)
    labels[:] = table.column(LABEL).to_numpy()


def scale_rows(rows: np.ndarray, scale: np.ndarray) -> None:
    """`rows` [n, k] *= a k-vector, in place; `scale` holds the vector tiled several times.

    Broadcasting the k-vector gives NumPy one k-long inner loop per row; viewing the rows as
    fewer, longer rows against the tiled vector gives it long loops (several times faster).
    """
    width = rows.shape[1]
    whole = len(rows) - len(rows) % (len(scale) // width)
    lines = np.reshape(rows[:whole], (-1, len(scale)), copy=False)
    np.multiply(lines, scale, out=lines)
    rows[whole:] *= scale[:width]


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
    Its reader thread decodes and normalises the pieces while the caller's thread shuffles
    and batches. Memory per worker is bounded by the shuffle buffer plus a few row groups
    (read ahead, or partly used), whatever the size of the split.
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
        pieces = read_tables(self.files, self.pieces(epoch, shard), convert=self._normalised)
        if self.shuffle:
            batches = self._mixed(pieces, np.random.default_rng((self.seed, epoch, 1, shard)))
        else:
            batches = self._in_order(pieces)
        emitted = 0
        for x, y in batches:
            emitted += 1
            yield to_batch(x, y, self.batch_size)
        no_rows = np.zeros((0, len(FEATURES)), dtype=np.float32), np.zeros(0, dtype=np.float32)
        for _ in range(emitted, self.shard_batches):
            yield to_batch(*no_rows, self.batch_size)

    def _normalised(self, table: pa.Table) -> PoolPart:
        """One piece as new normalised float32 arrays (runs in the reader thread)."""
        features = np.empty((table.num_rows, len(FEATURES)), dtype=np.float32)
        labels = np.empty(table.num_rows, dtype=np.float32)
        normalise_into(table, self.mean, self.std, features, labels)
        return PoolPart(features, labels)

    def _in_order(self, parts: Iterator[PoolPart]) -> Iterator:
        """The rows in piece order, `batch_size` at a time."""
        pool = RowPool()
        for part in parts:
            pool.add(part)
            while pool.rows >= self.batch_size:
                yield pool.first(self.batch_size)
        if pool.rows:
            yield pool.first(pool.rows)

    def _mixed(self, parts: Iterator[PoolPart], rng: np.random.Generator) -> Iterator:
        """Pieces mixed into random batches, `buffer_rows` rows at a time.

        Each piece's rows get a random order. Once the pool holds `buffer_rows` rows it is drawn
        down to less than a batch; what is left joins the next pieces. The batches of one
        draw-down are a uniformly random partition of the pool's rows, as if the pool had been
        permuted (only the order inside a batch differs: grouped by piece).
        """
        pool = RowPool()
        for part in parts:
            part.order = rng.permutation(part.left)
            pool.add(part)
            if pool.rows >= self.buffer_rows:
                while pool.rows >= self.batch_size:
                    yield pool.sample(self.batch_size, rng)
        while pool.rows:
            yield pool.sample(min(self.batch_size, pool.rows), rng)


@dataclass
class PoolPart:
    """One piece's normalised rows, used from the front of `order` (None: stored order)."""

    features: np.ndarray
    labels: np.ndarray
    order: np.ndarray | None = None
    used: int = 0

    @property
    def left(self) -> int:
        return len(self.labels) - self.used

    def next_rows(self, count: int) -> slice | np.ndarray:
        """The positions of the next `count` rows to use; marks them used."""
        start, self.used = self.used, self.used + count
        return slice(start, self.used) if self.order is None else self.order[start : self.used]


class RowPool:
    """Normalised rows waiting to be batched: the parts that still have rows left."""

    def __init__(self):
        self.parts: list[PoolPart] = []
        self.rows = 0

    def add(self, part: PoolPart) -> None:
        if part.left:
            self.parts.append(part)
            self.rows += part.left

    def first(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The next `rows` rows, in order (a view when they lie in one part)."""
        part = self.parts[0]
        if part.order is None and part.left >= rows:
            self.rows -= rows
            rows_used = part.next_rows(rows)
            if not part.left:
                self.parts.pop(0)
            return part.features[rows_used], part.labels[rows_used]
        ends = np.minimum(np.cumsum([p.left for p in self.parts]), rows)
        return self.take(np.diff(ends, prepend=0))

    def sample(self, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`rows` rows drawn uniformly at random without replacement.

        Each part's rows are used in a random order, so such a draw is: how many rows from each
        part (multivariate hypergeometric), then that many from the front of its order.
        """
        return self.take(rng.multivariate_hypergeometric([p.left for p in self.parts], rows))

    def take(self, counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Remove the next `counts[i]` rows of each part i; return them in new arrays."""
        total = int(sum(counts))
        features = np.empty((total, len(FEATURES)), dtype=np.float32)
        labels = np.empty(total, dtype=np.float32)
        offset = 0
        for part, count in zip(self.parts, counts, strict=True):
            if count:
                rows, out = part.next_rows(count), slice(offset, offset + count)
                copy_rows(part.features, rows, features[out])
                copy_rows(part.labels, rows, labels[out])
                offset += count
        self.parts = [part for part in self.parts if part.left]
        self.rows -= total
        return features, labels


def copy_rows(source: np.ndarray, rows: slice | np.ndarray, out: np.ndarray) -> None:
    """`out[:] = source[rows]` without an intermediate array."""
    if isinstance(rows, slice):
        out[:] = source[rows]
    else:  # rows of 8 float32 take NumPy's fast gather path; mode="clip" avoids a buffered copy
        np.take(source, rows, axis=0, out=out, mode="clip")


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


def read_tables(
    files: SplitFiles,
    pieces: Sequence[Piece],
    prefetch: int = 2,
    convert: Callable[[pa.Table], Any] | None = None,
) -> Iterator:
    """Decode the pieces in order in a background thread, `prefetch` pieces ahead.

    `convert`, if given, runs on each decoded table in that thread too, while its columns are
    still in that core's cache; its results are yielded instead of the tables.
    """
    reader = PieceReader(files)

    def read(piece: Piece):
        table = reader.read(piece)
        return table if convert is None else convert(table)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-read")
    upcoming = iter(pieces)
    pending = deque(pool.submit(read, piece) for piece in islice(upcoming, prefetch))
    try:
        while pending:
            result = pending.popleft().result()
            pending.extend(pool.submit(read, piece) for piece in islice(upcoming, 1))
            yield result
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
