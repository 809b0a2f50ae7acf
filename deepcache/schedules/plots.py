"""Figures of the schedule data classes, drawn with matplotlib (imported here only, when a figure is asked for).

The data classes' ``plot`` methods call these; each saves a PNG to ``path`` if given and returns the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from .block_caching import BlockCacheSchedule
    from .block_profile import BlockCacheProfile
    from .forecast import ForecastCalibration
    from .record import CacheRecord


def plot_record(record: CacheRecord, path: str | Path | None = None):
    """The signal per iteration with the threshold, and the full steps marked.

    Saves a PNG to ``path`` if given and returns the matplotlib figure.
    """

    figure, axis = plt.subplots(figsize=(9, 3.2))
    measured = [(step, signal) for step, signal in enumerate(record.signals) if signal is not None]
    if measured:
        axis.plot(
            *zip(*measured),
            color="tab:blue",
            marker=".",
            label="weighted change at the branch, summed since the last full step",
        )
    if record.threshold is not None:
        axis.axhline(
            record.threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {record.threshold:g}"
        )
    for step in record.full_steps:
        axis.axvline(step, color="0.8", linewidth=3, zorder=0)
    axis.set(xlim=(-0.5, record.num_iterations - 0.5), xlabel="loop iteration (grey: full step)", ylabel="signal")
    axis.set_title(f"{len(record.full_steps)} of {record.num_iterations} iterations full", fontsize=10)
    if measured or record.threshold is not None:
        axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def plot_block_profile(
    profile: BlockCacheProfile, path: str | Path | None = None, schedules: Sequence[BlockCacheSchedule] = ()
):
    """Change vs loop iteration, one line per unit (the paper's Fig. 3), and the schedules given.

    Saves a PNG to ``path`` if given and returns the matplotlib figure.
    """

    rows = 1 + len(schedules)
    figure, axes = plt.subplots(
        rows,
        1,
        figsize=(10, 4 + 2.2 * len(schedules)),
        squeeze=False,
        gridspec_kw={"height_ratios": [2] + [1] * len(schedules)},
    )
    colors = plt.colormaps["viridis"].resampled(max(len(profile.units), 2))
    steps = range(1, profile.num_steps)
    for index, (unit, curve) in enumerate(profile.changes.items()):
        axes[0, 0].plot(steps, curve[1:], color=colors(index), label=unit, linewidth=1.2)
    axes[0, 0].set(
        yscale="log",
        xlim=(-0.5, profile.num_steps - 0.5),
        xlabel="loop iteration k",
        ylabel="relative L1 change of residual, k-1 -> k",
    )
    axes[0, 0].set_title(
        f"Block Caching profile: {len(profile.units)} units, {profile.runs} run(s), {profile.num_steps} steps"
    )
    axes[0, 0].legend(fontsize=6, ncol=1 + len(profile.units) // 20, loc="upper left", bbox_to_anchor=(1.01, 1))
    for axis, schedule in zip(axes[1:, 0], schedules):
        for index, unit in enumerate(schedule.units):
            computed = schedule.recompute[unit]
            axis.scatter(computed, [index] * len(computed), s=6, marker="s", color=colors(index))
        axis.set(xlim=axes[0, 0].get_xlim(), yticks=[], ylabel="unit (first on top)", xlabel="loop iteration")
        axis.invert_yaxis()
        label = "schedule" if schedule.delta is None else f"delta {schedule.delta:g}"
        axis.set_title(
            f"{label}: iterations that compute each unit, {profile.flop_fraction(schedule):.0%} of the FLOPs",
            fontsize=9,
        )
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def plot_forecast(calibration: ForecastCalibration, path: str | Path | None = None):
    """The fitted gain per cached iteration (the channels' mean, with their range) beside the ``"linear"`` rule's.

    Saves a PNG to ``path`` if given and returns the matplotlib figure.
    """
    from .forecast import linear_gain

    figure, axis = plt.subplots(figsize=(9, 3.2))
    full, rows, linear = calibration.full_steps, [], []
    for i in range(calibration.num_steps):
        earlier = [s for s in full if s < i]
        if i in full or len(earlier) < 2:
            continue
        linear.append((i, linear_gain(i, earlier[-2], earlier[-1])))
        values = calibration.gains.get(i)
        if values is not None:
            rows.append((i, sum(values) / len(values), min(values), max(values)))
    if linear:
        axis.plot(*zip(*linear), color="0.5", linestyle="--", marker=".", label='"linear" rule')
    if rows:
        steps, mean, low, high = zip(*rows)
        axis.plot(steps, mean, color="tab:blue", marker="o", label="fitted gain")
        if any(a != b for a, b in zip(low, high)):
            axis.fill_between(steps, low, high, color="tab:blue", alpha=0.2, label="range over channels")
    for step in full:
        axis.axvline(step, color="0.85", linewidth=3, zorder=0)
    axis.axhline(0, color="k", linewidth=0.8)
    axis.set(
        xlim=(-0.5, calibration.num_steps - 0.5),
        xlabel="loop iteration (grey: full step)",
        ylabel="gain a (0: reuse)",
    )
    axis.set_title(f"{calibration!r}", fontsize=9)
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure
