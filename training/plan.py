"""Which rows each DDP rank and DataLoader worker reads in an epoch, from row counts alone.

The row groups are put in a seeded order (a new one each epoch), laid end to end, and cut into
`world_size * num_workers` contiguous shards of equal size (±1 row). Every shard yields the same
number of batches, padding its last ones with zero-weight rows, so every row is seen exactly once
per epoch and every rank runs the same number of steps. Only Parquet footers are needed, so all
ranks and workers compute the same plan without talking to each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
