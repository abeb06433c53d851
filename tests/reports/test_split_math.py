"""The split analysis's math: sample sizes, the knee, SEM on DuckDB against numpy, z and p."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import special, stats

from reports import split_analysis as sa
from reports.marts import COLUMNS, connect, parquet_source
from scripts.synthetic_lake import make_trips

SPLIT_SIZES = {"train": 6000, "validation": 700, "test": 650}


@pytest.fixture(scope="module")
def small_features(tmp_path_factory) -> list[str]:
    """trip_features files as a build writes them: `split` a column inside each file."""
    folder = tmp_path_factory.mktemp("split-math's files")  # a quote, to check the escaping
    rng = np.random.default_rng(3)
    first, files = 0, []
    for split, rows in SPLIT_SIZES.items():
        table = make_trips(first, rows, "fare", rng)
        if split == "validation":  # shift one column so the z-test has something to find
            shifted = table.column("fare_amount").to_numpy() + 5.0
            table = table.set_column(1, "fare_amount", [shifted])
        table = table.append_column("split", pa.array([split] * rows))
        files.append(str(folder / f"{split}-0.parquet"))
        pq.write_table(table, files[-1], row_group_size=1000)
        first += rows
    return files


def read_split(files: list[str], split: str) -> dict[str, np.ndarray]:
    table = pq.read_table(next(f for f in files if Path(f).name.startswith(f"{split}-")))
    return {name: table.column(name).to_numpy() for name in table.column_names}


def analyse(files: list[str]) -> sa.SplitAnalysis:
    return sa.analyse(parquet_source(files), "small_features")


def test_sample_sizes_are_powers_of_two_then_all_rows():
    assert sa.sample_sizes(5000) == [1024, 2048, 4096, 5000]
    assert sa.sample_sizes(4096) == [1024, 2048, 4096]
    assert sa.sample_sizes(1000) == [1000]
    assert sa.sample_sizes(300, start_exponent=7) == [128, 256, 300]


def test_knee_of_a_hyperbola_is_where_its_tangent_parallels_the_chord():
    # y = 1/x on [1, b]: the tangent is parallel to the chord at x = sqrt(b), and scaling the
    # axes to 0..1 (an affine map) does not move that point.
    x = np.linspace(1.0, 100.0, 9901)
    index = sa.knee_index(list(x), list(1.0 / x))
    assert x[index] == pytest.approx(10.0, abs=0.01)


def test_knee_of_a_corner_is_the_corner():
    y = [10.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert sa.knee_index(list(range(10)), y) == 2


def test_no_knee_on_a_line_a_constant_or_two_points():
    assert sa.knee_index([0, 1, 2, 3], [3.0, 2.0, 1.0, 0.0]) is None
    assert sa.knee_index([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0]) is None
    assert sa.knee_index([0, 1], [1.0, 0.0]) is None


@pytest.mark.parametrize(("low", "high"), [(10, 20), (10, 26), (15, 23)])
def test_knee_of_an_ideal_sem_curve_depends_on_the_range_only(low, high):
    # SEM = sigma / sqrt(2^t): the knee on log2 rows solves y'(t) = chord slope, whatever sigma.
    a, b = 2.0 ** (-low / 2), 2.0 ** (-high / 2)
    expected = -2.0 * math.log2((a - b) / ((high - low) * math.log(2) / 2))
    knees = set()
    for sigma in (0.01, 1.0, 4000.0):
        curve = [
            sa.SemPoint(size=2**k, rows=2**k, sem=sigma / math.sqrt(2**k))
            for k in range(low, high + 1)
        ]
        knees.add(sa.knee(curve).size)
    (knee,) = knees  # the same knee for every sigma
    assert math.floor(expected) <= math.log2(knee) <= math.ceil(expected)


def test_sem_curves_match_numpy_on_the_same_samples(small_features):
    total = sum(SPLIT_SIZES.values())
    sizes = sa.sample_sizes(total)
    curves = sa.sem_curves(
        connect(), parquet_source(small_features), ["fare_amount", "origin_lat"], sizes
    )

    columns = [read_split(small_features, split) for split in SPLIT_SIZES]
    keys = np.concatenate([c["trip_key"] for c in columns])
    u = np.array([int(key[16:31], 16) / 2.0**60 for key in keys])
    for name in ("fare_amount", "origin_lat"):
        values = np.concatenate([c[name] for c in columns])
        for point, size in zip(curves[name], sizes, strict=True):
            sample = values[u < size / total] if size < total else values
            assert point.size == size and point.rows == len(sample)
            expected = np.std(sample, ddof=1) / np.sqrt(len(sample))
            assert point.sem == pytest.approx(expected, rel=1e-9)
            assert point.sem == pytest.approx(stats.sem(sample), rel=1e-9)


def test_z_and_p_match_numpy_and_scipy(small_features):
    analysis = analyse(small_features)
    train = read_split(small_features, "train")
    assert analysis.total_rows == sum(SPLIT_SIZES.values())
    assert analysis.split_rows == SPLIT_SIZES
    assert [c.column for c in analysis.columns] == list(COLUMNS)
    for column in analysis.columns:
        assert column.train_mean == pytest.approx(train[column.column].mean(), rel=1e-12)
        assert column.train_std == pytest.approx(train[column.column].std(), rel=1e-9)
        for test in column.tests:
            held_out = read_split(small_features, test.split)[column.column]
            z = (held_out.mean() - column.train_mean) / (column.train_std / np.sqrt(len(held_out)))
            assert test.rows == len(held_out)
            assert test.z == pytest.approx(z, rel=1e-9)
            assert test.p_value == pytest.approx(special.erfc(abs(z) / np.sqrt(2)), rel=1e-9)
            assert test.p_value == pytest.approx(2 * stats.norm.cdf(-abs(z)), rel=1e-9)
    flagged = {(name, test.split) for name, test in analysis.flagged}
    assert ("fare_amount", "validation") in flagged  # the shifted column


def test_p_value_at_known_z_values():
    assert sa.z_test(1.959963984540054, 0.0, 1.0, 1)[1] == pytest.approx(0.05, rel=1e-9)
    assert sa.z_test(2.5758293035489, 0.0, 1.0, 1)[1] == pytest.approx(0.01, rel=1e-9)
    assert sa.z_test(0.0, 0.0, 1.0, 100) == (0.0, 1.0)
    assert sa.z_test(1.0, 0.0, 0.0, 100) == (None, None)  # constant train column


def test_recommended_fraction_is_the_largest_knee_over_all_rows(small_features):
    analysis = analyse(small_features)
    column = analysis.knee_column
    assert column is not None
    assert column.knee.size == max(c.knee.size for c in analysis.columns if c.knee)
    assert analysis.recommended_fraction == column.knee.size / analysis.total_rows
    data = analysis.to_dict()
    assert data["recommended_fraction"] == analysis.recommended_fraction
    assert data["caveats"] and data["knee_column"] == column.column


def test_margin_of_error_is_the_95_percent_half_width(small_features):
    assert sa.margin_of_error(2.0, 400) == pytest.approx(1.96 * 2.0 / 20.0, rel=1e-12)
    assert sa.margin_of_error(2.0, 0) == math.inf
    analysis = analyse(small_features)
    label = analysis.columns[0]
    assert set(analysis.label_margins) == {"validation", "test"}
    for split, margin in analysis.label_margins.items():
        rows = SPLIT_SIZES[split]
        assert margin == pytest.approx(1.96 * label.std / math.sqrt(rows), rel=1e-12)
    assert analysis.to_dict()["label_margins"] == analysis.label_margins
