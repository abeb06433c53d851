"""Small synthetic lakes for the training tests (`scripts/synthetic_lake.py` writes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.synthetic_lake import Layout, write_lake

# Rows per row group, per file, per split.
SMALL_LAYOUT: Layout = {
    "train": [[1500, 1500, 700], [1200, 300], [800]],
    "validation": [[400, 250], [350]],
    "test": [[500], [300, 200]],
}


@pytest.fixture(scope="session")
def fare_lake(tmp_path_factory) -> Path:
    """A lake whose fares follow `known_fare` plus N(0, NOISE_STD) noise."""
    return write_lake(tmp_path_factory.mktemp("fare") / "lake", SMALL_LAYOUT, label="fare")


@pytest.fixture(scope="session")
def id_lake(tmp_path_factory) -> Path:
    """A lake whose fare is the row's global index, to identify rows."""
    return write_lake(tmp_path_factory.mktemp("ids") / "lake", SMALL_LAYOUT, label="row_id")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and CI machines are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
