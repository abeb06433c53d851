"""What the data-quality page shows, read from one pinned build's marts and dbt's artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from lakehouse.build_artifacts import RUN_RESULTS, artifacts_uri
from lakehouse.builds import PinnedBuild
from lakehouse.increment import read_increment
from reports import split_analysis
from reports.dbt_artifacts import DbtRun, load_build_dbt_run, load_dbt_run
from reports.marts import COLUMNS, SPLITS, connect, scan

# Rejection reasons in the order the VACUUM rules are applied, with their principle: for a
# build whose manifest predates `meta.reasons` on trips_rejected.rejection_reason
# (models/marts/trips_rejected.yml), which is where they are defined now.
REASONS = {
    "malformed_line": "valid",
    "duplicate": "unified",
    "invalid_pickup_time": "valid",
    "invalid_fare": "valid",
    "missing_coordinates": "valid",
    "fare_out_of_range": "accurate",
    "outside_service_area": "accurate",
    "pickup_time_out_of_range": "accurate",
}
ACCEPTED = "accepted"
HISTOGRAM_BINS = 40
# Continuous columns are drawn between these quantiles of all rows, so a few extreme fares do
# not squash the rest of the histogram into one bar.
CLIP_QUANTILES = (0.001, 0.999)


@dataclass(frozen=True)
class Check:
    """One reconciliation line: what dbt counted against what is in the Parquet files."""

    anchor: str
    what: str
    counted: int
    written: int

    @property
    def ok(self) -> bool:
        return self.counted == self.written


@dataclass(frozen=True)
class Histogram:
    """Counts per split of one column, over shared bins (integer values or equal-width bins)."""

    column: str
    discrete: bool
    edges: tuple[float, ...]
    counts: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class QualityReport:
    """Everything the data-quality page shows, all of it from one published build."""

    build: PinnedBuild
    outcomes: dict[str, dict[str, int]]  # month file -> outcome -> raw lines
    checks: tuple[Check, ...]
    feature_stats: dict[str, tuple[float, float]]  # column -> (mean, population std)
    histograms: tuple[Histogram, ...]
    splits: split_analysis.SplitAnalysis
    dbt_run: DbtRun | None
    dbt_results: str  # where dbt_run came from: the build's recorded run_results, or the target's
    dbt_target: Path
    raw_files: dict | None = None  # what the build read (lakehouse/increment.py), if recorded

    @property
    def raw_lines(self) -> int:
        return sum(sum(by_outcome.values()) for by_outcome in self.outcomes.values())

    def total(self, outcome: str) -> int:
        return sum(by_outcome.get(outcome, 0) for by_outcome in self.outcomes.values())

    @property
    def reason_principles(self) -> dict[str, str]:
        """{rejection reason: VACUUM principle} in rule order, as the build's dbt project
        defines them."""
        return reason_principles(self.dbt_run)

    @property
    def reasons(self) -> list[str]:
        """Every known rejection reason (zeros included), then any unknown ones found."""
        found = {o for by_outcome in self.outcomes.values() for o in by_outcome} - {ACCEPTED}
        known = self.reason_principles
        return [*known, *sorted(found - set(known))]

    @property
    def reconciled(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def tests_of_another_build(self) -> bool:
        """The dbt test results shown come from another dbt invocation than the marts."""
        return self.dbt_run is not None and self.dbt_run.invocation_id != self.build.invocation_id


def count_by(con: duckdb.DuckDBPyConnection, source: str, *keys: str) -> dict:
    """{key tuple (or key): rows} of a Parquet scan grouped by `keys`."""
    columns = ", ".join(keys)
    rows = con.execute(f"select {columns}, count(*) from {source} group by all").fetchall()
    return {(row[:-1] if len(keys) > 1 else row[0]): int(row[-1]) for row in rows}


def read_outcomes(con: duckdb.DuckDBPyConnection, summary: str) -> dict[str, dict[str, int]]:
    """data_quality_summary as {month file: {outcome: raw lines}}, files in name order."""
    rows = con.execute(
        f"select source_file, outcome, sum(row_count)::bigint from {summary} "
        "group by all order by all"
    ).fetchall()
    outcomes: dict[str, dict[str, int]] = {}
    for source_file, outcome, count in rows:
        outcomes.setdefault(source_file, {})[outcome] = int(count)
    return outcomes


def reason_principles(dbt_run: DbtRun | None) -> dict[str, str]:
    """The rejection reasons of the dbt run's manifest, or REASONS for an older build."""
    return (dbt_run.rejection_reasons if dbt_run else None) or REASONS


def reconcile(
    con: duckdb.DuckDBPyConnection, sources: dict[str, str], known: dict[str, str] = REASONS
) -> tuple[Check, ...]:
    """dbt's counts (data_quality_summary) against the rows in trip_features and trips_rejected."""
    summary = sources["data_quality_summary"]
    counted = {
        (split, outcome): int(count)
        for split, outcome, count in con.execute(
            f"select split, outcome, sum(row_count)::bigint from {summary} group by all"
        ).fetchall()
    }
    accepted = count_by(con, sources["trip_features"], "split")
    rejected = count_by(con, sources["trips_rejected"], "rejection_reason")
    raw = sum(counted.values())
    counted_accepted = sum(n for (_, outcome), n in counted.items() if outcome == ACCEPTED)
    checks = [
        Check(
            "raw",
            "raw lines = trip_features rows + trips_rejected rows",
            raw,
            sum(accepted.values()) + sum(rejected.values()),
        ),
        Check("accepted", "accepted rows", counted_accepted, sum(accepted.values())),
    ]
    splits = [*SPLITS, *sorted(set(accepted) - set(SPLITS))]
    checks += [
        Check(
            f"split-{s}", f"accepted rows in {s}", counted.get((s, ACCEPTED), 0), accepted.get(s, 0)
        )
        for s in splits
    ]
    rejected_reasons = {outcome for _, outcome in counted if outcome != ACCEPTED}
    reasons = [*known, *sorted((rejected_reasons | set(rejected)) - set(known))]
    checks += [
        Check(
            f"reason-{reason}",
            f"rejected: {reason}",
            sum(n for (_, outcome), n in counted.items() if outcome == reason),
            rejected.get(reason, 0),
        )
        for reason in reasons
    ]
    return tuple(checks)


def read_feature_stats(
    con: duckdb.DuckDBPyConnection, feature_stats: str
) -> dict[str, tuple[float, float]]:
    """feature_stats as {column: (mean, population std)} (dbt computes it on train only)."""
    rows = con.execute(
        f"select feature_name, mean_value, std_value from {feature_stats}"
    ).fetchall()
    return {name: (mean, std) for name, mean, std in rows}


def integer_columns(con: duckdb.DuckDBPyConnection, source: str) -> set[str]:
    kinds = con.execute(f"describe select * from {source}").fetchall()
    return {name for name, kind, *_ in kinds if "INT" in kind.upper()}


def histogram(
    con: duckdb.DuckDBPyConnection, source: str, column: str, discrete: bool
) -> Histogram:
    """Counts per split over bins shared by all splits."""
    quoted = f'"{column}"'
    if discrete:
        low, high = con.execute(f"select min({quoted}), max({quoted}) from {source}").fetchone()
        edges = tuple(float(v) - 0.5 for v in range(int(low), int(high) + 2))
        bucket = f"{quoted} - {int(low)}"
    else:
        low, high = con.execute(
            f"select quantile_cont({quoted}, {CLIP_QUANTILES[0]}), "
            f"quantile_cont({quoted}, {CLIP_QUANTILES[1]}) from {source}"
        ).fetchone()
        if high <= low:
            high = low + 1.0
        width = (high - low) / HISTOGRAM_BINS
        edges = tuple(low + i * width for i in range(HISTOGRAM_BINS + 1))
        # The top edge belongs to the last bin.
        bucket = f"least(floor(({quoted} - {low!r}) / {width!r})::integer, {HISTOGRAM_BINS - 1})"
    where = "" if discrete else f" where {quoted} between {low!r} and {high!r}"
    rows = con.execute(
        f"select split, {bucket} as bucket, count(*) from {source}{where} group by all"
    ).fetchall()
    bins = len(edges) - 1
    counts = {split: [0] * bins for split in SPLITS}
    for split, index, count in rows:
        counts.setdefault(split, [0] * bins)[int(index)] += int(count)
    return Histogram(column, discrete, edges, {s: tuple(c) for s, c in counts.items()})


def collect(build: PinnedBuild, dbt_target: Path) -> QualityReport:
    """Read every mart of the pinned build and the dbt artifacts the page needs: those the
    build recorded in the lake; `dbt_target`'s only for a build that recorded none."""
    dbt_run = load_build_dbt_run(build)
    dbt_results = f"{artifacts_uri(build.lake_root, build.invocation_id)}/{RUN_RESULTS}"
    if dbt_run is None:
        dbt_run, dbt_results = load_dbt_run(dbt_target), str(dbt_target / RUN_RESULTS)
    sources = {mart: scan(build, mart) for mart in build.snapshots}
    con = connect()
    features = sources["trip_features"]
    integers = integer_columns(con, features)
    return QualityReport(
        build=build,
        outcomes=read_outcomes(con, sources["data_quality_summary"]),
        checks=reconcile(con, sources, reason_principles(dbt_run)),
        feature_stats=read_feature_stats(con, sources["feature_stats"]),
        histograms=tuple(histogram(con, features, c, c in integers) for c in COLUMNS),
        splits=split_analysis.analyse(features, f"{build.lake_root}/trip_features"),
        dbt_run=dbt_run,
        dbt_results=dbt_results,
        dbt_target=dbt_target,
        raw_files=read_increment(build.lake_root, build.invocation_id),
    )
