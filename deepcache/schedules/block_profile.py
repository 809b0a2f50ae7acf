"""Block Caching profiles (arXiv 2312.03209, Sec. 3.2) as data: each unit's change curve and FLOPs.

:func:`deepcache.profile_blocks` measures a profile by running a pipeline; a
:class:`BlockCacheProfile` derives schedules for a threshold or for a target speedup, saves to JSON
and plots the curves (an example from profile to image is in :mod:`deepcache.measurement.profiling`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .block_caching import BlockCacheSchedule, derive_schedule, flop_fraction


@dataclass(frozen=True)
class BlockCacheProfile:
    """Measured change curves and FLOPs of a pipeline's Block Caching units.

    Args:
        changes (`Mapping[str, Sequence[float]]`): unit -> ``changes[k]``, its mean relative L1 change
            from loop iteration ``k - 1`` to ``k`` (``0.0`` at ``k = 0``).
        unit_flops (`Mapping[str, int]`): FLOPs of one call of each unit within one U-Net call.
        step_flops (`int`): FLOPs of one whole U-Net call.
        runs (`int`, defaults to `1`): pipeline runs averaged.
    """

    changes: Mapping[str, tuple[float, ...]]
    unit_flops: Mapping[str, int]
    step_flops: int
    runs: int = 1
    meta: dict = field(default_factory=dict, compare=False)  # how it was measured, for the record

    def __post_init__(self):
        object.__setattr__(self, "changes", {unit: tuple(map(float, c)) for unit, c in self.changes.items()})
        missing = [unit for unit in self.changes if unit not in self.unit_flops]
        if missing:
            raise ValueError(f"`unit_flops` lacks units {missing} that `changes` has.")

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(self.changes)

    @property
    def num_steps(self) -> int:
        return len(next(iter(self.changes.values())))

    def flop_fraction(self, schedule: BlockCacheSchedule) -> float:
        """U-Net FLOPs of a run under ``schedule`` over those of an uncached run."""
        return flop_fraction(schedule, self.unit_flops, self.step_flops)

    def schedule(self, delta: float) -> BlockCacheSchedule:
        """The schedule for threshold ``delta`` (the paper uses 0.5 on its LDM); 0 caches nothing."""
        schedule = derive_schedule(self.changes, delta)
        return BlockCacheSchedule(schedule.num_steps, schedule.recompute, delta, self.flop_fraction(schedule))

    def max_speedup(self) -> float:
        """The FLOP speedup when every unit is computed only at the first iteration."""
        return 1 / self.flop_fraction(BlockCacheSchedule(self.num_steps, {unit: (0,) for unit in self.units}))

    def delta_for_speedup(self, speedup: float, tolerance: float = 1e-4) -> float:
        """The smallest ``delta`` (within ``tolerance``) whose schedule's FLOP speedup reaches ``speedup``.

        FLOPs never grow with ``delta``, so a bisection finds it. Raises a ``ValueError`` when even
        computing every unit only once would not reach it.
        """
        if isinstance(speedup, bool) or not isinstance(speedup, (int, float)) or not speedup >= 1:
            raise ValueError(f"`speedup` must be a number >= 1, but got {speedup!r}.")
        reachable = self.max_speedup()
        if speedup > reachable:
            raise ValueError(
                f"`speedup` {speedup} is out of reach: caching these {len(self.units)} units gives at most "
                f"{reachable:.3f}x in FLOPs. Profile more units (e.g. `units='all'`) or ask for less."
            )

        def reaches(delta: float) -> bool:
            return 1 / self.flop_fraction(derive_schedule(self.changes, delta)) >= speedup

        low, high = 0.0, max(sum(curve) for curve in self.changes.values())
        if reaches(low):
            return low
        while high - low > tolerance:
            middle = (low + high) / 2
            if reaches(middle):
                high = middle
            else:
                low = middle
        return high

    def schedule_for_speedup(self, speedup: float) -> BlockCacheSchedule:
        """The schedule of :meth:`delta_for_speedup`."""
        return self.schedule(self.delta_for_speedup(speedup))

    def to_dict(self) -> dict:
        return {
            "runs": self.runs,
            "step_flops": self.step_flops,
            "meta": self.meta,
            "unit_flops": dict(self.unit_flops),
            "changes": {u: list(c) for u, c in self.changes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> BlockCacheProfile:
        return cls(data["changes"], data["unit_flops"], data["step_flops"], data.get("runs", 1), data.get("meta", {}))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> BlockCacheProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, path: str | Path | None = None, schedules: Sequence[BlockCacheSchedule] = ()):
        """Change vs loop iteration, one line per unit (the paper's Fig. 3), and the schedules given
        (:func:`deepcache.schedules.plots.plot_block_profile`)."""
        from .plots import plot_block_profile  # matplotlib loads only when a figure is drawn

        rows = []
        for schedule in schedules:
            label = "schedule" if schedule.delta is None else f"delta {schedule.delta:g}"
            title = f"{label}: iterations that compute each unit, {self.flop_fraction(schedule):.0%} of the FLOPs"
            rows.append((title, {unit: schedule.recompute[unit] for unit in schedule.units}))
        return plot_block_profile(self.changes, self.num_steps, self.runs, path, rows)
