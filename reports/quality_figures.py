"""The matplotlib figures of the data-quality page (rendered to inline SVG by reports.html)."""

from __future__ import annotations

import re

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.quality import ACCEPTED, QualityReport
from reports.split_analysis import SplitAnalysis

SPLIT_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}


def month_label(source_file: str) -> str:
    """`taxi_2015_01.txt` -> `2015-01`; other names as they are."""
    found = re.fullmatch(r"taxi_(\d{4})_(\d{2})\.txt", source_file)
    return f"{found[1]}-{found[2]}" if found else source_file


def outcomes_figure(report: QualityReport) -> Figure:
    """Raw lines per outcome, one horizontal bar each."""
    names = [ACCEPTED, *report.reasons]
    values = [report.total(name) for name in names]
    figure = Figure(figsize=(8, 3.6))
    axes = figure.subplots()
    colors = ["#2ca02c"] + ["#d62728"] * (len(names) - 1)
    axes.barh(names[::-1], values[::-1], color=colors[::-1])
    for y, value in enumerate(values[::-1]):
        axes.text(value, y, f" {value:,}", va="center", fontsize=8)
    axes.set_xlabel("raw lines")
    axes.set_xlim(0, max([*values, 1]) * 1.15)
    return figure


def months_figure(report: QualityReport) -> Figure:
    """Per month file: raw lines (accepted vs rejected), and the rejection rate by reason."""
    files = list(report.outcomes)
    labels = [month_label(f) for f in files]
    x = range(len(files))
    figure = Figure(figsize=(11, 6.2))
    top, bottom = figure.subplots(2, 1, sharex=True)
    raw = [sum(report.outcomes[f].values()) for f in files]
    accepted = [report.outcomes[f].get(ACCEPTED, 0) for f in files]
    top.bar(x, accepted, color="#2ca02c", label="accepted")
    top.bar(
        x,
        [r - a for r, a in zip(raw, accepted, strict=True)],
        bottom=accepted,
        color="#d62728",
        label="rejected",
    )
    top.set_ylabel("raw lines")
    top.legend(loc="upper right", fontsize=8)
    base = [0.0] * len(files)
    palette = [
        "#8c564b",
        "#9467bd",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
        "#ff7f0e",
        "#1f77b4",
        "#d62728",
    ]
    for i, reason in enumerate(report.reasons):
        share = [
            100.0 * report.outcomes[f].get(reason, 0) / r if r else 0.0
            for f, r in zip(files, raw, strict=True)
        ]
        if any(share):
            bottom.bar(x, share, bottom=base, color=palette[i % len(palette)], label=reason)
            base = [b + s for b, s in zip(base, share, strict=True)]
    bottom.set_ylabel("% of raw lines rejected")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    bottom.set_xticks(list(x), labels, rotation=90, fontsize=7)
    figure.tight_layout()
    return figure


def distributions_figure(report: QualityReport) -> Figure:
    """Density of every column per split, small multiples."""
    figure = Figure(figsize=(11, 8.5))
    grid = figure.subplots(3, 3).ravel()
    for axes, hist in zip(grid, report.histograms, strict=False):
        widths = [b - a for a, b in zip(hist.edges, hist.edges[1:], strict=False)]
        for split, counts in hist.counts.items():
            total = sum(counts)
            if not total:
                continue
            density = [c / total / w for c, w in zip(counts, widths, strict=True)]
            axes.stairs(density, hist.edges, color=SPLIT_COLORS.get(split), label=split, lw=1.3)
        if hist.discrete:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(hist.column, fontsize=10)
        axes.tick_params(labelsize=7)
    grid[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def sem_figure(analysis: SplitAnalysis) -> Figure:
    """SEM against sample size per column, log2 x axis, knee and held-out sizes marked."""
    figure = Figure(figsize=(11, 8.5))
    grid = figure.subplots(3, 3).ravel()
    for axes, column in zip(grid, analysis.columns, strict=False):
        rows = [p.rows for p in column.curve]
        axes.plot(rows, [p.sem for p in column.curve], "o-", ms=3, lw=1.2, color="#1f77b4")
        axes.set_xscale("log", base=2)
        for split, n in analysis.split_rows.items():
            if split != "train":
                axes.axvline(n, color=SPLIT_COLORS[split], ls=":", lw=1)
        if column.knee is not None:
            axes.plot([column.knee.rows], [column.knee.sem], "o", color="#d62728", ms=7)
            axes.set_title(f"{column.column} (knee {column.knee.size:,})", fontsize=10)
        else:
            axes.set_title(f"{column.column} (no knee)", fontsize=10)
        axes.tick_params(labelsize=7)
    figure.supxlabel("sample rows (log2 scale); dotted: validation and test sizes", fontsize=9)
    figure.supylabel("SEM", fontsize=9)
    figure.tight_layout()
    return figure
