"""training.data: sharding, padding, shuffling, normalisation, resident mode."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from lakehouse.builds import PinnedBuild, pin_build
from scripts.synthetic_lake import write_lake
from training.data import (
    NORMALISE_BLOCK_ROWS,
    TRAINING_MARTS,
    DataConfig,
    ParquetBatches,
    PoolPart,
    ResidentBatches,
    RowPool,
    TripDataModule,
    normalise_into,
)
from training.lake import FEATURES, LABEL, discover_split, load_feature_stats
from training.plan import epoch_order, plan_shard, shard_bounds


def pinned(data: Path) -> PinnedBuild:
    return pin_build(str(data), marts=TRAINING_MARTS)


def stream(data: Path, split: str = "train", **kwargs) -> ParquetBatches:
    build = pinned(data)
    return ParquetBatches(discover_split(build, split), load_feature_stats(build), **kwargs)


def real_ids(batches) -> list[int]:
    """Row ids (the fare, in `row_id` lakes) of the real rows, in the order yielded."""
    ids: list[int] = []
    for _, y, w in batches:
        ids += y[w > 0].long().tolist()
    return ids


@settings(max_examples=300, deadline=None)
@given(
    row_counts=st.lists(st.integers(0, 50), min_size=1, max_size=12),
    num_shards=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_plan_covers_every_row_once(row_counts, num_shards, seed):
    order = epoch_order(len(row_counts), seed, epoch=0, shuffle=True)
    covered = Counter()
    for shard in range(num_shards):
        pieces = plan_shard(row_counts, order, shard, num_shards)
        lo, hi = shard_bounds(sum(row_counts), shard, num_shards)
        assert sum(stop - start for _, start, stop in pieces) == hi - lo
        for group, start, stop in pieces:
            assert 0 <= start < stop <= row_counts[group]
            covered.update((group, row) for row in range(start, stop))
    assert len(covered) == sum(row_counts)
    assert set(covered.values()) <= {1}


@settings(max_examples=100, deadline=None)
@given(
    layout=st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=4), min_size=1, max_size=4),
    world_size=st.integers(1, 3),
    num_workers=st.integers(1, 3),
    batch_size=st.integers(1, 64),
    buffer_rows=st.integers(1, 100),
    shuffle=st.booleans(),
    epoch=st.integers(0, 3),
)
def test_every_row_once_with_equal_batches_per_rank(
    layout, world_size, num_workers, batch_size, buffer_rows, shuffle, epoch
):
    with tempfile.TemporaryDirectory() as folder:
        data = write_lake(Path(folder) / "lake", {"train": layout}, label="row_id")
        total = sum(map(sum, layout))
        ids, batches_per_rank = [], []
        for rank in range(world_size):
            rank_batches = 0
            for worker in range(num_workers):
                dataset = stream(
                    data,
                    batch_size=batch_size,
                    shuffle=shuffle,
                    seed=7,
                    rank=rank,
                    world_size=world_size,
                    num_workers=num_workers,
                    worker_id=worker,
                    shuffle_buffer_rows=buffer_rows,
                )
                dataset.set_epoch(epoch)
                batches = list(dataset)
                for x, y, w in batches:
                    assert x.shape == (batch_size, len(FEATURES)) and x.dtype == torch.float32
                    assert y.shape == w.shape == (batch_size,)
                    assert torch.all(x[w == 0] == 0) and torch.all(y[w == 0] == 0)
                ids += real_ids(batches)
                rank_batches += len(batches)
            assert rank_batches == len(dataset)
            batches_per_rank.append(rank_batches)
        assert sorted(ids) == list(range(total))
        assert len(set(batches_per_rank)) == 1


def test_shuffle_differs_each_epoch_and_repeats_for_a_seed(id_lake):
    def order(seed: int, epoch: int) -> list[int]:
        dataset = stream(id_lake, batch_size=128, shuffle=True, seed=seed, shuffle_buffer_rows=1000)
        dataset.set_epoch(epoch)
        return real_ids(dataset)

    first = order(seed=1, epoch=0)
    assert sorted(first) == list(range(6000))
    assert order(seed=1, epoch=1) != first
    assert order(seed=1, epoch=0) == first
    assert order(seed=2, epoch=0) != first


def test_evaluation_order_is_file_order(id_lake):
    dataset = stream(id_lake, "validation", batch_size=128, shuffle=False)
    assert real_ids(dataset) == list(range(6000, 7000))


def test_epoch_reaches_persistent_workers(id_lake):
    kwargs = dict(batch_size=100, shuffle=True, seed=3, num_workers=2, shuffle_buffer_rows=500)
    dataset = stream(id_lake, **kwargs)
    loader = DataLoader(dataset, batch_size=None, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        seen.append(real_ids(loader))
    for epoch, got in enumerate(seen):
        # The DataLoader takes batches from its workers in turn.
        per_worker = []
        for worker in (0, 1):
            shard = stream(id_lake, worker_id=worker, **kwargs)
            shard.set_epoch(epoch)
            per_worker.append(list(shard))
        expected = real_ids(b for pair in zip(*per_worker, strict=True) for b in pair)
        assert got == expected
    assert seen[0] != seen[1]


def test_features_normalised_with_train_stats_and_label_in_dollars(id_lake):
    validation = id_lake / "data" / "build-1" / "split=validation"
    raw = pq.read_table(validation).to_pandas().set_index("fare_amount")
    stats = load_feature_stats(pinned(id_lake))
    mean, std = np.array(stats.mean), np.array(stats.std)
    for x, y, w in stream(id_lake, "validation", batch_size=300, shuffle=True, seed=0):
        rows = raw.loc[y[w > 0].numpy().astype(np.float64), list(FEATURES)].to_numpy()
        np.testing.assert_allclose(x[w > 0].numpy(), (rows - mean) / std, rtol=1e-5, atol=1e-4)
    # Over the train split itself the normalised features have mean 0 and std 1.
    train = torch.cat([x[w > 0] for x, _, w in stream(id_lake, batch_size=512, shuffle=False)])
    np.testing.assert_allclose(train.double().mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.double().std(0, correction=0).numpy(), 1.0, atol=1e-4)


def test_normalise_into_is_the_plain_formula_bit_for_bit():
    rows = 2 * NORMALISE_BLOCK_ROWS + 37  # several blocks, and rows left over in the last one
    rng = np.random.default_rng(0)
    columns = {
        name: rng.uniform(-77.2, 39.0, rows) if i < 4 else rng.integers(0, 24, rows, np.int32)
        for i, name in enumerate(FEATURES)
    }
    columns[LABEL] = rng.uniform(3.25, 179.75, rows)
    mean, std = rng.uniform(-77.0, 39.0, len(FEATURES)), rng.uniform(0.01, 5.0, len(FEATURES))
    features = np.empty((rows, len(FEATURES)), np.float32)
    labels = np.empty(rows, np.float32)
    normalise_into(pa.table(columns), mean, std, features, labels)
    raw = np.column_stack([columns[name].astype(np.float64) for name in FEATURES])
    # Subtract in float64, round to float32, scale by 1/std in float32: what the fused,
    # blocked passes must reproduce exactly (resident and streamed batches compare equal).
    np.testing.assert_array_equal(
        features, (raw - mean).astype(np.float32) * (1.0 / std).astype(np.float32)
    )
    np.testing.assert_allclose(features, (raw - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, columns[LABEL].astype(np.float32))


def id_pool(sizes: list[int], rng: np.random.Generator) -> RowPool:
    """A pool of parts whose label (and every feature) is the row's id, in a random order."""
    pool, first = RowPool(), 0
    for size in sizes:
        ids = np.arange(first, first + size, dtype=np.float32)
        features = np.repeat(ids[:, None], len(FEATURES), axis=1)
        pool.add(PoolPart(features, ids, order=rng.permutation(size)))
        first += size
    return pool


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 30), min_size=1, max_size=6),
    batch=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_row_pool_draws_every_row_once_with_its_features(sizes, batch, seed):
    rng = np.random.default_rng(seed)
    pool, drawn = id_pool(sizes, rng), []
    while pool.rows:
        rows = min(batch, pool.rows)
        x, y = pool.sample(rows, rng)
        assert x.shape == (rows, len(FEATURES)) and y.shape == (rows,)
        assert np.array_equal(x, np.repeat(y[:, None], len(FEATURES), axis=1))
        drawn += y.tolist()
    assert sorted(drawn) == list(range(sum(sizes)))


def test_row_pool_draws_each_row_with_equal_chance_whatever_its_part():
    rng = np.random.default_rng(0)
    sizes, batch, draws = [2, 5, 9], 4, 6000
    hits = np.zeros(sum(sizes))
    for _ in range(draws):
        _, y = id_pool(sizes, rng).sample(batch, rng)
        hits[y.astype(int)] += 1
    # A uniform draw picks each of the 16 rows with chance 4/16 (binomial sd 0.006 here).
    np.testing.assert_allclose(hits / draws, batch / sum(sizes), atol=0.03)


@pytest.mark.parametrize("world_size", [1, 3])
def test_resident_batches_shard_pad_and_reshuffle(id_lake, world_size):
    files = discover_split(pinned(id_lake), "train")
    stats = load_feature_stats(pinned(id_lake))
    loaders = [
        ResidentBatches.load(
            files,
            stats,
            torch.device("cpu"),
            batch_size=700,
            shuffle=True,
            seed=5,
            rank=rank,
            world_size=world_size,
        )
        for rank in range(world_size)
    ]
    orders = []
    for epoch in (0, 1):
        ids = []
        for loader in loaders:
            loader.set_epoch(epoch)
            batches = list(loader)
            assert len(batches) == len(loader) == len(loaders[0])
            ids += real_ids(batches)
        assert sorted(ids) == list(range(6000))
        orders.append(ids)
    assert orders[0] != orders[1]


def test_resident_and_streamed_batches_hold_the_same_values(id_lake):
    streamed = stream(id_lake, "test", batch_size=64, shuffle=False)
    resident = ResidentBatches.load(
        streamed.files,
        load_feature_stats(pinned(id_lake)),
        torch.device("cpu"),
        batch_size=64,
        shuffle=False,
    )
    for (xs, ys, ws), (xr, yr, wr) in zip(streamed, resident, strict=True):
        assert torch.equal(xs, xr) and torch.equal(ys, yr) and torch.equal(ws, wr)


def test_data_module_holds_small_splits_and_streams_large_ones(id_lake):
    small = TripDataModule(DataConfig(data=str(id_lake), batch_size=256))
    small.setup("fit")
    assert isinstance(small.train_dataloader(), ResidentBatches)
    large = TripDataModule(DataConfig(data=str(id_lake), batch_size=256, resident_max_bytes=0))
    large.setup("fit")
    assert isinstance(large.train_dataloader(), DataLoader)
    large.set_epoch(4)
    assert int(large.train_dataloader().dataset._epoch) == 4
    assert "test" not in large.loaders
