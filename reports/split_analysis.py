"""How many rows does a held-out split need, and are ours like train? The book's split analysis.

    python -m reports.split_analysis [--data data/lake/trip_features] [--snapshot ID] [--json]

It reads the lake's current published build of trip_features (or the one `--snapshot` /
`--as-of` pins), only that build's Parquet files.

For each column (the label and the 8 features) over all accepted rows:

- the standard error of the mean, SEM = s / sqrt(n), of nested random samples of 2^10, 2^11, ...
  rows and of all rows. A row is in the sample of size n when u < n / N, where
  u = int(trip_key[16:31], 16) / 2^60 is uniform and independent of the split bucket (which uses
  trip_key[:15]), so the samples are reproducible on any engine;
- the knee of that curve by the book's method: the point farthest from the chord joining the
  curve's first and last points, on log2(rows) against SEM, both scaled to 0..1;
- the held-out fraction the largest knee implies: knee rows / all rows, for test and for
  validation each. A weak guide (see CAVEATS): the knee follows the range of sample sizes;
- what the configured held-out sizes give instead: the 95% margin of error of each split's
  mean label, 1.96 * s / sqrt(n);
- the book's z-test of each held-out split's mean against train,
  z = (mean_split - mean_train) / (std_train / sqrt(n_split)) with the population std, exactly
  as dbt's `splits_are_representative` test computes it, and its two-sided p-value;
- which pairs are flagged, by the same decision as that test: Bonferroni over the m (column,
  held-out split) pairs compared (a column constant in train has no z and is not counted), so
  a pair is flagged when |z| exceeds the 1 - ALPHA / (2 m) normal quantile (p < ALPHA / m) and
  a correct random split is flagged with probability at most ALPHA.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

if __name__ == "__main__":  # parse the command line before the heavy imports below
    from reports.cli import main_split_analysis

    sys.exit(main_split_analysis())

import duckdb
from scipy import stats

from lakehouse.builds import pin_build
from reports.marts import (
    COLUMNS,
    SPLITS,
    MissingMarts,
    as_of_time,
    connect,
    scan,
)

START_EXPONENT = 10
# Family-wise error rate of the z-tests: the `alpha` of dbt's splits_are_representative test
# (models/marts/trip_features.yml; tests/reports/test_data_quality_page.py keeps them equal).
ALPHA = 0.05
Z_95 = 1.96  # two-sided 95%: a mean is known to +- Z_95 * s / sqrt(n)
# Where the sensitivity check starts the curve instead of 2^START_EXPONENT.
RANGE_STARTS = (10, 12, 14)
# u in [0, 1) from 15 hex digits of the key that the split bucket does not use.
SAMPLE_UNIFORM_SQL = "cast(('0x' || substr(trip_key, 17, 15))::bigint as double) / 2.0 ^ 60"

CAVEATS = (
    "SEM = s/√n for every column, so the curve always falls as 1/√n. On a log axis its shape "
    "is the same for every column: the knee says more about the range of sample sizes than "
    "about the data, and every column's knee lands in about the same place.",
    "The knee depends on the range chosen: start the curve at 2^12 instead of 2^10 (or end it "
    "elsewhere) and the knee moves with it — see 'knee if the curve starts at'. A held-out size "
    "chosen from the error you can accept is better founded: n = (1.96·s / tolerance)² rows "
    "estimate a mean within ± tolerance at 95%.",
    "The z-test treats the train mean as the known population mean: it leaves out the train "
    "mean's own error, so |z| is too large by a factor √(1 + n_split / n_train), about 4% "
    "when train is 85% of the rows and a held-out split 7.5%.",
    "The flag is corrected for the number of pairs compared (Bonferroni), so that a correct "
    f"random split is flagged in at most {ALPHA:.0%} of builds; a pair's own p-value below "
    f"{ALPHA:g} is not a flag. The price is power: a shift is flagged from about 3 standard "
    "errors, not 1.96. The correction is conservative here, as the pairs are correlated "
    "(validation and test share the train mean, origin and destination move together). The "
    "hash split is fixed on purpose: do not redraw it until nothing is flagged (that is testing "
    "until a test passes).",
    "Only means are compared: a split with the same mean but a different spread or shape passes.",
)


@dataclass(frozen=True)
class SemPoint:
    """SEM of one nested random sample: its nominal size (2^k or all rows) and its actual rows."""

    size: int
    rows: int
    sem: float


@dataclass(frozen=True)
class SplitTest:
    """The book's z-test of one held-out split's mean against train."""

    split: str
    rows: int
    mean: float
    z: float | None
    p_value: float | None


@dataclass(frozen=True)
class ColumnAnalysis:
    """Everything the split analysis says about one column."""

    column: str
    std: float
    train_mean: float
    train_std: float
    curve: tuple[SemPoint, ...]
    knee: SemPoint | None
    knee_by_range_start: tuple[tuple[int, int | None], ...]
    tests: tuple[SplitTest, ...]


@dataclass(frozen=True)
class SplitAnalysis:
    """The split analysis of one trip_features dataset."""

    data: str
    total_rows: int
    split_rows: dict[str, int]
    columns: tuple[ColumnAnalysis, ...]
    alpha: float = ALPHA  # family-wise error rate of the z-tests

    @property
    def knee_column(self) -> ColumnAnalysis | None:
        """The column whose knee needs the most rows (the one that sets the recommendation)."""
        with_knee = [c for c in self.columns if c.knee is not None]
        return max(with_knee, key=lambda c: c.knee.size) if with_knee else None

    @property
    def recommended_fraction(self) -> float | None:
        """Largest knee (nominal sample size) / all rows: the fraction for test and validation."""
        column = self.knee_column
        return None if column is None else min(1.0, column.knee.size / self.total_rows)

    @property
    def configured_fractions(self) -> dict[str, float]:
        return {split: rows / self.total_rows for split, rows in self.split_rows.items()}

    @property
    def label_margins(self) -> dict[str, float]:
        """{held-out split: 95% margin of error of its mean label}, from the label's std."""
        label = self.columns[0] if self.columns else None
        return {
            split: margin_of_error(label.std, rows)
            for split, rows in self.split_rows.items()
            if split != "train" and label is not None
        }

    @property
    def comparisons(self) -> int:
        """m: the (column, held-out split) pairs with a z (a column constant in train has none)."""
        return sum(t.z is not None for c in self.columns for t in c.tests)

    @property
    def z_threshold(self) -> float | None:
        """The Bonferroni |z| threshold for `comparisons` pairs; None when nothing is compared."""
        m = self.comparisons
        return bonferroni_z_threshold(self.alpha, m) if m else None

    @property
    def p_value_threshold(self) -> float | None:
        """alpha / m: the p-value below which a pair is flagged (the same as |z| > z_threshold)."""
        m = self.comparisons
        return self.alpha / m if m else None

    def is_flagged(self, test: SplitTest) -> bool:
        """The pair's |z| is above the corrected threshold: what dbt's test fails on."""
        return test.z is not None and abs(test.z) > self.z_threshold

    @property
    def flagged(self) -> list[tuple[str, SplitTest]]:
        return [(c.column, t) for c in self.columns for t in c.tests if self.is_flagged(t)]

    def to_dict(self) -> dict:
        """Plain data for `--json`, with the derived figures included."""
        data = asdict(self)
        data["recommended_fraction"] = self.recommended_fraction
        data["label_margins"] = self.label_margins
        data["configured_fractions"] = self.configured_fractions
        column = self.knee_column
        data["knee_column"] = None if column is None else column.column
        data["flagged"] = [
            {"column": name, "split": test.split, "z": test.z, "p_value": test.p_value}
            for name, test in self.flagged
        ]
        data["comparisons"] = self.comparisons
        data["z_threshold"] = self.z_threshold
        data["p_value_threshold"] = self.p_value_threshold
        data["caveats"] = list(CAVEATS)
        return data


def sample_sizes(total: int, start_exponent: int = START_EXPONENT) -> list[int]:
    """2^start, 2^(start+1), ... below `total`, then `total` itself."""
    sizes = []
    size = 2**start_exponent
    while size < total:
        sizes.append(size)
        size *= 2
    return [*sizes, total] if total > 0 else []


def knee_index(x: Sequence[float], y: Sequence[float]) -> int | None:
    """Index of the point farthest from the chord joining the first and last points.

    Both axes are scaled to 0..1 first, so the units of x and y do not matter. None when there
    are fewer than 3 points or the curve is flat or a straight line (no knee).
    """
    if len(x) < 3 or len(x) != len(y):
        return None
    x_span, y_span = x[-1] - x[0], max(y) - min(y)
    if x_span == 0 or y_span == 0:
        return None
    xs = [(v - x[0]) / x_span for v in x]
    ys = [(v - min(y)) / y_span for v in y]
    dx, dy = xs[-1] - xs[0], ys[-1] - ys[0]
    chord = math.hypot(dx, dy)
    distances = [abs(dx * (ys[i] - ys[0]) - dy * (xs[i] - xs[0])) / chord for i in range(len(xs))]
    best = max(range(len(xs)), key=distances.__getitem__)
    return best if distances[best] > 1e-12 else None


def knee(curve: Sequence[SemPoint]) -> SemPoint | None:
    """The book's knee of a SEM curve, on log2(rows) against SEM."""
    index = knee_index([math.log2(p.rows) for p in curve], [p.sem for p in curve])
    return None if index is None else curve[index]


def knee_by_range_start(
    curve: Sequence[SemPoint], starts: Sequence[int] = RANGE_STARTS
) -> tuple[tuple[int, int | None], ...]:
    """(first sample size, knee size) when the curve starts at 2^k instead: shows the knee move."""
    moved = []
    for exponent in starts:
        start = 2**exponent
        part = [p for p in curve if p.size >= start]
        if len(part) >= 3:
            found = knee(part)
            moved.append((start, None if found is None else found.size))
    return tuple(moved)


def margin_of_error(std: float, rows: int) -> float:
    """Half-width of the 95% confidence interval of a mean of `rows` values: 1.96 * s / sqrt(n)."""
    return Z_95 * std / math.sqrt(rows) if rows > 0 else math.inf


def bonferroni_z_threshold(alpha: float, comparisons: int) -> float:
    """The |z| above which one of `comparisons` two-sided z-tests is flagged at family-wise
    error `alpha` (Bonferroni): the 1 - alpha / (2 m) normal quantile, i.e. p < alpha / m.
    0.05 and 18 pairs: 2.9913."""
    return float(stats.norm.isf(alpha / (2 * comparisons)))


def z_test(
    split_mean: float, train_mean: float, train_std: float, split_rows: int
) -> tuple[float | None, float | None]:
    """The book's z and its two-sided p-value; (None, None) when train_std is 0 or n is 0."""
    if not train_std or train_std <= 0 or split_rows <= 0:
        return None, None
    z = (split_mean - train_mean) / (train_std / math.sqrt(split_rows))
    return z, float(2.0 * stats.norm.sf(abs(z)))


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (M2) of some values; mergeable exactly."""

    count: int
    mean: float
    m2: float

    def merge(self, other: Moments) -> Moments:
        """The moments of both sets together (Chan et al.'s pairwise update, numerically stable)."""
        count = self.count + other.count
        if count == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return Moments(count, mean, m2)

    @property
    def sem(self) -> float:
        """Sample standard deviation / sqrt(count)."""
        return math.sqrt(self.m2 / (self.count - 1)) / math.sqrt(self.count)


def sem_curves(
    con: duckdb.DuckDBPyConnection,
    source: str,
    columns: Sequence[str],
    sizes: Sequence[int],
) -> dict[str, tuple[SemPoint, ...]]:
    """SEM of every column on nested samples of about each size, in one pass over the data.

    Each row goes to the first sample that contains it (the shell between two sizes); the
    moments of the shells are then merged, smallest first, into those of the nested samples.
    """
    total = sizes[-1]
    shell = " ".join(f"when u < {size / total!r} then {k}" for k, size in enumerate(sizes[:-1]))
    shell = f"case {shell} else {len(sizes) - 1} end" if shell else "0"
    moments = ", ".join(f'avg("{c}"), var_pop("{c}")' for c in columns)
    rows = con.execute(
        f"select {shell} as shell, count(*), {moments} "
        f"from (select *, {SAMPLE_UNIFORM_SQL} as u from {source}) group by shell"
    ).fetchall()
    by_shell = {int(row[0]): row[1:] for row in rows}
    curves: dict[str, list[SemPoint]] = {name: [] for name in columns}
    merged = {name: Moments(0, 0.0, 0.0) for name in columns}
    for k, size in enumerate(sizes):
        if k not in by_shell:
            continue  # an empty shell adds nothing; the sample equals the previous one
        count, *values = by_shell[k]
        for i, name in enumerate(columns):
            mean, variance = values[2 * i], values[2 * i + 1]
            merged[name] = merged[name].merge(Moments(int(count), mean, variance * count))
            if merged[name].count >= 2:
                curves[name].append(
                    SemPoint(size=size, rows=merged[name].count, sem=merged[name].sem)
                )
    return {name: tuple(points) for name, points in curves.items()}


def split_moments(
    con: duckdb.DuckDBPyConnection, source: str, columns: Sequence[str]
) -> dict[str, dict[str, tuple[int, float, float]]]:
    """{split: {column: (rows, mean, population std)}} — the moments dbt's z-test uses."""
    selects = [f'avg("{c}"), stddev_pop("{c}"), count("{c}")' for c in columns]
    result: dict[str, dict[str, tuple[int, float, float]]] = {}
    for split, *values in con.execute(
        f"select split, {', '.join(selects)} from {source} group by split"
    ).fetchall():
        result[split] = {
            name: (int(values[3 * i + 2]), values[3 * i], values[3 * i + 1])
            for i, name in enumerate(columns)
        }
    return result


def analyse(
    source: str, data: str, columns: Sequence[str] = COLUMNS, start_exponent: int = START_EXPONENT
) -> SplitAnalysis:
    """Run the whole split analysis on trip_features rows.

    Args:
        source: SQL reading the rows (`reports.marts.scan` of a pinned build).
        data: what the rows are, for the report's title.
    """
    con = connect()
    moments = split_moments(con, source, columns)
    if "train" not in moments:
        raise MissingMarts(f"no train rows in {data} — run `dbt build` first")
    split_rows = {s: moments[s][columns[0]][0] for s in SPLITS if s in moments}
    total = sum(split_rows.values())
    curves = sem_curves(con, source, columns, sample_sizes(total, start_exponent))
    analysed = []
    for name in columns:
        _, train_mean, train_std = moments["train"][name]
        tests = []
        for split in SPLITS:
            if split == "train" or split not in moments:
                continue
            rows, mean, _ = moments[split][name]
            z, p = z_test(mean, train_mean, train_std, rows)
            tests.append(SplitTest(split=split, rows=rows, mean=mean, z=z, p_value=p))
        curve = curves[name]
        std = curve[-1].sem * math.sqrt(curve[-1].rows) if curve else 0.0
        analysed.append(
            ColumnAnalysis(
                column=name,
                std=std,
                train_mean=train_mean,
                train_std=train_std,
                curve=curve,
                knee=knee(curve),
                knee_by_range_start=knee_by_range_start(curve),
                tests=tuple(tests),
            )
        )
    return SplitAnalysis(str(data), total, split_rows, tuple(analysed))


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def text_report(analysis: SplitAnalysis) -> str:
    """The analysis as a plain-text table for the terminal."""
    a = analysis
    splits = " · ".join(f"{s} {n:,}" for s, n in a.split_rows.items())
    sizes = [p.size for p in a.columns[0].curve] if a.columns and a.columns[0].curve else []
    lines = [f"Split analysis of {a.data}: {a.total_rows:,} rows ({splits})"]
    if len(sizes) > 1:
        lines.append(
            f"SEM of nested random samples of {sizes[0]:,} .. {sizes[-2]:,} rows and of all "
            f"{a.total_rows:,} rows."
        )
    held_out = [t.split for t in a.columns[0].tests] if a.columns else []
    header = f"{'column':<14}{'std':>10}{'SEM first':>11}{'SEM all':>10}{'knee rows':>11}"
    header += "".join(f"{'z ' + s[:4]:>9}{'p ' + s[:4]:>9}" for s in held_out)
    lines += ["", header]
    for c in a.columns:
        first = c.curve[0].sem if c.curve else None
        last = c.curve[-1].sem if c.curve else None
        row = f"{c.column:<14}{fmt(c.std, '.4g'):>10}{fmt(first, '.4g'):>11}{fmt(last, '.4g'):>10}"
        row += f"{fmt(c.knee and c.knee.size, ','):>11}"
        row += "".join(f"{fmt(t.z, '.2f'):>9}{fmt(t.p_value, '.3f'):>9}" for t in c.tests)
        lines.append(row)
    lines.append("")
    column = a.knee_column
    if column is None:
        lines.append("No knee: too few sample sizes (fewer than 3) or constant columns.")
    else:
        moved = ", ".join(
            f"{s:,} -> {k:,}" if k else f"{s:,} -> —" for s, k in column.knee_by_range_start
        )
        lines.append(
            f"Knee method (a weak guide, see below): largest knee {column.knee.size:,} rows "
            f"({column.column}) = {a.recommended_fraction:.2%} of all rows for test and for "
            f"validation each; it moves with where the curve starts ({moved})."
        )
    configured = ", ".join(
        f"{s} {f:.2%} ({a.split_rows[s]:,} rows)"
        for s, f in a.configured_fractions.items()
        if s != "train"
    )
    lines.append(f"Configured: {configured}.")
    margins = ", ".join(f"{s} ±{m:.3f}" for s, m in a.label_margins.items())
    if a.columns:
        lines.append(f"95% margin of error of each split's mean {a.columns[0].column}: {margins}.")
    if a.comparisons:
        flagged = ", ".join(
            f"{name}/{t.split} (z={t.z:.2f}, p={t.p_value:.3g})" for name, t in a.flagged
        )
        lines.append(
            f"Flagged (Bonferroni over {a.comparisons} pairs at family-wise alpha {a.alpha:g}: "
            f"|z| > {a.z_threshold:.4f}, p < {a.p_value_threshold:.3g}): {flagged or 'none'}."
        )
    lines += ["", "Where this method is weak:"]
    lines += [f"- {caveat}" for caveat in CAVEATS]
    return "\n".join(lines)


def report_from_args(args: argparse.Namespace) -> str:
    """The analysis of the build `reports.cli.split_analysis_parser`'s options pin, as text or
    JSON."""
    build = pin_build(args.data, args.snapshot, as_of_time(args.as_of), marts=("trip_features",))
    source = scan(build, "trip_features")
    data = f"{build.lake_root}/trip_features (snapshot {build.snapshot_id})"
    analysis = analyse(source, data, start_exponent=args.start_exponent)
    return json.dumps(analysis.to_dict(), indent=2) if args.json else text_report(analysis)
