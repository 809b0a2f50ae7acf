"""Calibrated DeepCache schedules: full steps placed where a measured error says they matter most.

A :class:`ScheduleCalibration` holds, for one pipeline setting, the measured cost of a cached step
at iteration ``i`` that replays the features of the full step ``j < i``: the error it adds to the
noise prediction (after guidance), weighted by how much the scheduler passes on to the final image.
Given a budget of full steps, :meth:`ScheduleCalibration.full_steps` places them by dynamic
programming to minimise the summed cost; iteration 0 is always full.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ScheduleCalibration:
    """Measured costs of cached steps, and the schedules they give.

    Args:
        num_steps (`int`): loop iterations of the calibrated calls.
        branch (`int`): the cached branch the costs were measured at.
        costs (`Mapping[int, Mapping[int, float]]`): ``costs[i][j]``, the cost of a cached step at
            iteration ``i`` replaying the features of full step ``j`` (for ``i - max_interval <= j < i``).
        weights (`Sequence[float]`): the scheduler weight each iteration's error got (already in ``costs``).
        meta (`Mapping`, *optional*): what was calibrated (pipeline, scheduler, calls).
    """

    num_steps: int
    branch: int
    costs: Mapping[int, Mapping[int, float]]
    weights: Sequence[float] = ()
    meta: Mapping = field(default_factory=dict)

    def __post_init__(self):
        costs = {int(i): {int(j): float(c) for j, c in row.items()} for i, row in self.costs.items()}
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "weights", tuple(self.weights))
        for i, row in costs.items():
            if not 0 < i < self.num_steps or any(not 0 <= j < i for j in row):
                raise ValueError(f"`costs[{i}]` must name iterations j < i < {self.num_steps}, but has {sorted(row)}.")

    @property
    def max_interval(self) -> int:
        """The longest run between full steps the costs cover."""
        return max((i - min(row) + 1 for i, row in self.costs.items() if row), default=1)

    def cost(self, full_steps: Sequence[int]) -> float:
        """The summed cost of the cached steps of a schedule (``inf`` where a run is longer than measured)."""
        full, total, last = set(full_steps), 0.0, None
        for step in range(self.num_steps):
            if step in full:
                last = step
            else:
                total += self.costs.get(step, {}).get(last, math.inf)
        return total

    def full_steps(self, num_full: int) -> tuple[int, ...]:
        """The ``num_full`` full iterations (0 among them) with the least summed cost."""
        if isinstance(num_full, bool) or not isinstance(num_full, int) or not 1 <= num_full <= self.num_steps:
            raise ValueError(f"`num_full` must be an integer in [1, {self.num_steps}], but got {num_full!r}.")
        steps = self.num_steps
        # run[j][e]: cost of full step j followed by cached steps j+1 .. e-1 (the next full step at e, or the end).
        run = {j: [0.0] * (steps + 1) for j in range(steps)}
        for j in range(steps):
            total = 0.0
            for e in range(j + 1, steps + 1):
                run[j][e] = total
                if e < steps:
                    total += self.costs.get(e, {}).get(j, math.inf)
        best = {(1, 0): (0.0, None)}  # (full steps used, last full step) -> (cost so far, previous last full step)
        for count in range(2, num_full + 1):
            for e in range(count - 1, steps):
                options = [(best[(count - 1, j)][0] + run[j][e], j) for j in range(e) if (count - 1, j) in best]
                if options:
                    best[(count, e)] = min(options)
        finals = [(best[(num_full, j)][0] + run[j][steps], j) for j in range(steps) if (num_full, j) in best]
        total, last = min(finals)
        if math.isinf(total):
            raise ValueError(
                f"No schedule with {num_full} full steps keeps every run within the calibrated {self.max_interval} "
                "iterations; calibrate with a larger `max_interval` or use more full steps."
            )
        chosen = [last]
        for count in range(num_full, 1, -1):  # walk back through each full step's predecessor
            last = best[(count, last)][1]
            chosen.append(last)
        return tuple(sorted(chosen))

    def schedule(self, cache_interval: int) -> tuple[int, ...]:
        """The calibrated full steps for the budget of uniform interval ``N``: ``ceil(T / N)`` of them."""
        return self.full_steps(math.ceil(self.num_steps / cache_interval))

    def to_dict(self) -> dict:
        return {
            "num_steps": self.num_steps,
            "branch": self.branch,
            "weights": list(self.weights),
            "meta": dict(self.meta),
            "costs": {str(i): {str(j): c for j, c in row.items()} for i, row in self.costs.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ScheduleCalibration:
        return cls(data["num_steps"], data["branch"], data["costs"], data.get("weights", ()), data.get("meta", {}))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ScheduleCalibration:
        return cls.from_dict(json.loads(Path(path).read_text()))
