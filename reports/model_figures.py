"""The matplotlib figures of the model page (rendered to inline SVG by reports.html)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.quality_figures import SPLIT_COLORS

if TYPE_CHECKING:
    from reports.model import ModelReport

# Test drawn last and strongest; the other splits for comparison.
SPLIT_ORDER = ("train", "validation", "test")
TEST_STYLE = {"lw": 2.4, "ms": 5, "alpha": 1.0, "zorder": 3}
OTHER_STYLE = {"lw": 1.1, "ms": 3, "alpha": 0.7, "zorder": 2}


def style(split: str) -> dict:
    return {"color": SPLIT_COLORS[split], **(TEST_STYLE if split == "test" else OTHER_STYLE)}


def reference_lines(axes: Axes, report: ModelReport) -> None:
    """The noise floor and the linear baseline's test RMSE as horizontal lines."""
    if report.floor.rmse is not None:
        axes.axhline(report.floor.rmse, color="#555", ls="--", lw=1, label="noise floor")
    axes.axhline(
        report.baseline.test_rmse, color="#d62728", ls=":", lw=1.2, label="linear baseline (test)"
    )


def rmse_figure(report: ModelReport, breakdown: str, xlabel: str) -> Figure:
    """RMSE per bucket of `breakdown` (pickup month or hour), one line per split."""
    buckets = report.buckets(breakdown)
    position = {bucket: i for i, bucket in enumerate(buckets)}
    figure = Figure(figsize=(11, 3.8))
    axes = figure.subplots()
    for split in SPLIT_ORDER:
        rows = report.where(breakdown, split)
        if rows:
            axes.plot(
                [position[r.bucket] for r in rows],
                [r.rmse for r in rows],
                "o-",
                label=split,
                **style(split),
            )
    reference_lines(axes, report)
    months = breakdown == "pickup_month" and len(buckets) > 8
    axes.set_xticks(range(len(buckets)), buckets, rotation=90 if months else 0, fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("RMSE, dollars")
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", color="#e6e8ec")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    return figure


def residuals_figure(report: ModelReport) -> Figure:
    """Share of trips per whole-dollar residual bin [k, k + 1): test as bars, the other splits
    as steps; the end bins (k = -10 and 10) hold the tails and are hatched."""
    figure = Figure(figsize=(11, 3.8))
    axes = figure.subplots()
    edges = list(range(-10, 12))
    for split in SPLIT_ORDER:
        rows = report.where("residual_dollars", split)
        total = sum(r.trip_count for r in rows)
        if not total:
            continue
        share = {int(r.bucket): 100.0 * r.trip_count / total for r in rows}
        values = [share.get(left, 0.0) for left in edges[:-1]]
        if split == "test":
            body = [v if -10 < k < 10 else 0.0 for k, v in zip(edges[:-1], values, strict=True)]
            tails = [v - b for v, b in zip(values, body, strict=True)]
            bar = {"width": 1.0, "align": "edge", "color": SPLIT_COLORS[split], "alpha": 0.75,
                   "edgecolor": "white", "zorder": 2}  # fmt: skip
            axes.bar(edges[:-1], body, label=split, **bar)
            axes.bar(edges[:-1], tails, hatch="//", label=f"{split}, tails", **bar)
        else:
            axes.stairs(values, edges, color=SPLIT_COLORS[split], lw=1.3, label=split, zorder=3)
    axes.axvline(0, color="#555", lw=0.8)
    ticks = list(range(-9, 11))
    axes.set_xticks(ticks, [f"{t:+d}" if t else "0" for t in ticks], fontsize=8)
    axes.set_xlim(-10, 11)
    axes.set_xlabel("predicted - actual fare, dollars (hatched: below -9 and from +10 on)")
    axes.set_ylabel("% of the split's trips")
    axes.grid(axis="y", color="#e6e8ec")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    return figure


def deciles_figure(report: ModelReport) -> Figure:
    """Mean predicted against mean actual fare per fare decile, per split, and the diagonal."""
    figure = Figure(figsize=(6.4, 5.2))
    axes = figure.subplots()
    top = 0.0
    for split in SPLIT_ORDER:
        rows = report.where("fare_decile", split)
        if not rows:
            continue
        actual = [r.mean_fare for r in rows]
        predicted = [r.mean_predicted_fare for r in rows]
        axes.plot(actual, predicted, "o-", label=split, **style(split))
        top = max(top, *actual, *predicted)
        if split == "test":
            for r in rows:
                axes.annotate(
                    str(int(r.bucket)), (r.mean_fare, r.mean_predicted_fare),
                    textcoords="offset points", xytext=(4, -10), fontsize=7, color="#17602b",
                )  # fmt: skip
    top *= 1.05
    axes.plot([0, top], [0, top], color="#555", ls="--", lw=1, label="predicted = actual")
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_aspect("equal")
    axes.set_xlabel("mean actual fare in the decile, dollars")
    axes.set_ylabel("mean predicted fare, dollars")
    axes.grid(color="#e6e8ec")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure
