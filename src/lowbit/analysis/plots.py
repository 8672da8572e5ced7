"""PNG plots for layer compares and reports (matplotlib, Agg backend: no display needed).

    plot_layers(report, "layers.png")   # SQNR dB and cosine per layer, failures in red
    plot_bars(["F32", "INT8"], [4.1, 1.7], "latency", "ms", "latency.png")

Infinite SQNR (bit-identical layers) is drawn at the top of the finite range,
so one EQUAL layer does not flatten the panel.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # before pyplot: render to files only, never open a window

import matplotlib.pyplot as plt

from lowbit.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lowbit.analysis.layerwise import LayerReport

MAX_TICK_LABELS = 40
PASS_COLOR = "tab:blue"
FAIL_COLOR = "tab:red"


def plot_layers(report: LayerReport, path: str | Path) -> Path:
    """Two stacked panels over the layers in graph order: SQNR (dB) and cosine."""
    path = Path(path)
    diffs = report.diffs
    x = list(range(len(diffs)))
    failed = [not d.passed for d in diffs]
    width = min(max(6.0, 0.25 * len(diffs) + 2.0), 30.0)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(width, 7.0))
    try:
        _plot_series(top, x, _finite_sqnr([d.sqnr_db for d in diffs]), failed)
        top.set_ylabel("SQNR (dB)")
        title = textwrap.fill(f"layer compare: {report.summary()}", width=int(width * 11))
        top.set_title(title, fontsize=9)
        _plot_series(bottom, x, [d.cosine for d in diffs], failed)
        bottom.axhline(report.tolerance.cosine, color=FAIL_COLOR, linestyle="--", linewidth=1,
                       label=f"tolerance cos {report.tolerance.cosine:g}")
        bottom.set_ylabel("cosine")
        bottom.legend(loc="lower left", fontsize=8)
        step = max(1, math.ceil(len(diffs) / MAX_TICK_LABELS))
        ticks = x[::step]
        bottom.set_xticks(ticks)
        bottom.set_xticklabels([diffs[i].name for i in ticks], rotation=75, ha="right",
                               fontsize=7)
        bottom.set_xlabel("tensor (graph order)")
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str,
              path: str | Path) -> Path:
    """A labelled bar chart, each bar annotated with its value."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 * len(labels) + 2.0), 4.0))
    try:
        bars = ax.bar(list(labels), list(values), color=PASS_COLOR)
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelrotation=30 if len(labels) > 4 else 0)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def _plot_series(ax: Axes, x: list[int], y: list[float], failed: list[bool]) -> None:
    ax.plot(x, y, color=PASS_COLOR, linewidth=1, marker="o", markersize=3)
    bad_x = [i for i, bad in zip(x, failed, strict=True) if bad]
    if bad_x:
        ax.scatter(bad_x, [y[i] for i in bad_x], color=FAIL_COLOR, zorder=3, label="FAILED")
    ax.grid(True, alpha=0.3)


def _finite_sqnr(values: list[float]) -> list[float]:
    """Replace ±inf by the finite extremes (or 0 and 100 dB when none is finite)."""
    finite = [v for v in values if math.isfinite(v)]
    high = max(finite, default=100.0)
    low = min(finite, default=0.0)
    return [high if v == math.inf else low if v == -math.inf else v for v in values]


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
