"""Figures of the schedule data classes, drawn with matplotlib (imported here only, when a figure is asked for).

The data classes' ``plot`` methods call these with their numbers; this module imports none of them, so
imports flow one way. Each function saves a PNG to ``path`` if given and returns the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt


def plot_record(
    num_iterations: int,
    full_steps: Sequence[int],
    signals: Sequence[float | None] = (),
    threshold: float | None = None,
    path: str | Path | None = None,
):
    """The signal per iteration with the threshold, and the full steps marked (a ``CacheRecord``'s)."""
    figure, axis = plt.subplots(figsize=(9, 3.2))
    measured = [(step, signal) for step, signal in enumerate(signals) if signal is not None]
    if measured:
        axis.plot(
            *zip(*measured),
            color="tab:blue",
            marker=".",
            label="weighted change at the branch, summed since the last full step",
        )
    if threshold is not None:
        axis.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    for step in full_steps:
        axis.axvline(step, color="0.8", linewidth=3, zorder=0)
    axis.set(xlim=(-0.5, num_iterations - 0.5), xlabel="loop iteration (grey: full step)", ylabel="signal")
    axis.set_title(f"{len(set(full_steps))} of {num_iterations} iterations full", fontsize=10)
    if measured or threshold is not None:
        axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def plot_block_profile(
    changes: Mapping[str, Sequence[float]],
    num_steps: int,
    runs: int,
    path: str | Path | None = None,
    schedules: Sequence[tuple[str, Mapping[str, Sequence[int]]]] = (),
):
    """Change vs loop iteration, one line per unit (the paper's Fig. 3; a ``BlockCacheProfile``'s), and under it
    each schedule given as ``(title, iterations that compute each unit)``."""
    units = list(changes)
    rows = 1 + len(schedules)
    figure, axes = plt.subplots(
        rows,
        1,
        figsize=(10, 4 + 2.2 * len(schedules)),
        squeeze=False,
        gridspec_kw={"height_ratios": [2] + [1] * len(schedules)},
    )
    colors = plt.colormaps["viridis"].resampled(max(len(units), 2))
    steps = range(1, num_steps)
    for index, (unit, curve) in enumerate(changes.items()):
        axes[0, 0].plot(steps, curve[1:], color=colors(index), label=unit, linewidth=1.2)
    axes[0, 0].set(
        yscale="log",
        xlim=(-0.5, num_steps - 0.5),
        xlabel="loop iteration k",
        ylabel="relative L1 change of residual, k-1 -> k",
    )
    axes[0, 0].set_title(f"Block Caching profile: {len(units)} units, {runs} run(s), {num_steps} steps")
    axes[0, 0].legend(fontsize=6, ncol=1 + len(units) // 20, loc="upper left", bbox_to_anchor=(1.01, 1))
    for axis, (title, recompute) in zip(axes[1:, 0], schedules):
        for index, unit in enumerate(recompute):
            computed = recompute[unit]
            axis.scatter(computed, [index] * len(computed), s=6, marker="s", color=colors(index))
        axis.set(xlim=axes[0, 0].get_xlim(), yticks=[], ylabel="unit (first on top)", xlabel="loop iteration")
        axis.invert_yaxis()
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def plot_forecast(
    num_steps: int,
    full_steps: Sequence[int],
    gains: Mapping[int, Sequence[float]],
    linear: Mapping[int, float],
    title: str,
    path: str | Path | None = None,
):
    """The fitted gain per cached iteration (the channels' mean, with their range; a ``ForecastCalibration``'s)
    beside the ``"linear"`` rule's gain at each iteration it forecasts."""
    figure, axis = plt.subplots(figsize=(9, 3.2))
    rows = [(i, sum(v) / len(v), min(v), max(v)) for i, v in sorted(gains.items()) if i in linear]
    linear = sorted(linear.items())
    if linear:
        axis.plot(*zip(*linear), color="0.5", linestyle="--", marker=".", label='"linear" rule')
    if rows:
        steps, mean, low, high = zip(*rows)
        axis.plot(steps, mean, color="tab:blue", marker="o", label="fitted gain")
        if any(a != b for a, b in zip(low, high)):
            axis.fill_between(steps, low, high, color="tab:blue", alpha=0.2, label="range over channels")
    for step in full_steps:
        axis.axvline(step, color="0.85", linewidth=3, zorder=0)
    axis.axhline(0, color="k", linewidth=0.8)
    axis.set(xlim=(-0.5, num_steps - 0.5), xlabel="loop iteration (grey: full step)", ylabel="gain a (0: reuse)")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure
