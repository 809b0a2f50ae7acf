"""Block Caching schedules (arXiv 2312.03209, Sec. 3.2): which loop iterations compute each unit.

Pure functions of a unit's measured change curve and the threshold ``delta``. A schedule is plain
data: it prints, compares, and saves to JSON. As everywhere in this library, a step is a loop
iteration, never a timestep value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .deepcache import check_positive_int


def recompute_steps(changes: Sequence[float], delta: float) -> tuple[int, ...]:
    """The paper's accumulation rule for one unit: the iterations at which it is computed.

    The unit is computed at iteration 0. After computing at iteration ``a`` it is reused while the
    summed change ``changes[a + 1] + ... + changes[k]`` stays at most ``delta``, and recomputed at
    the first ``k`` where the sum would exceed it; the sum restarts there. ``delta = 0`` computes
    every iteration.

    Args:
        changes (`Sequence[float]`): ``changes[k]`` is the unit's relative change from iteration
            ``k - 1`` to ``k``; ``changes[0]`` is not used.
        delta (`float`): the threshold, ``>= 0``.
    """
    _check_delta(delta)
    steps, accumulated = [0], 0.0
    for step in range(1, len(changes)):
        accumulated += changes[step]
        if delta == 0 or accumulated > delta:
            steps.append(step)
            accumulated = 0.0
    return tuple(steps)


def _check_delta(delta) -> None:
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta):
        raise TypeError(f"`delta` must be a finite number >= 0, but got {delta!r}.")
    if delta < 0:
        raise ValueError(f"`delta` must be >= 0, but got {delta}.")


@dataclass(frozen=True)
class BlockCacheSchedule:
    """Per Block Caching unit, the loop iterations that compute it; all others reuse its residual.

    Pass it to a pipeline as ``pipe(..., block_cache=schedule)`` or to
    ``DeepCacheSDHelper.set_params(block_cache=schedule)``. Derive one with
    :meth:`deepcache.BlockCacheProfile.schedule`.

    Args:
        num_steps (`int`): loop iterations of the runs it is for; a run of another length is refused.
        recompute (`Mapping[str, Sequence[int]]`): unit name -> increasing iterations that compute it,
            starting with 0 (the first iteration has nothing to reuse).
        delta (`float`, *optional*): the threshold it was derived with, kept for the record.
        flop_fraction (`float`, *optional*): the U-Net FLOPs of a run with it over a run without, as
            counted by the profile it came from.
    """

    num_steps: int
    recompute: Mapping[str, tuple[int, ...]]
    delta: float | None = None
    flop_fraction: float | None = field(default=None, compare=False)

    def __post_init__(self):
        check_positive_int("num_steps", self.num_steps)
        if not isinstance(self.recompute, Mapping) or not self.recompute:
            raise TypeError(
                f"`recompute` must be a non-empty mapping of unit name to iterations, but got {self.recompute!r}."
            )
        recompute = {}
        for unit, steps in self.recompute.items():
            steps = tuple(steps)
            if any(isinstance(s, bool) or not isinstance(s, int) for s in steps):
                raise TypeError(f"`recompute[{unit!r}]` must hold integer iterations, but got {steps}.")
            if not steps or steps[0] != 0 or list(steps) != sorted(set(steps)) or steps[-1] >= self.num_steps:
                raise ValueError(
                    f"`recompute[{unit!r}]` must be increasing iterations in [0, {self.num_steps - 1}] starting "
                    f"with 0, but got {steps}."
                )
            recompute[str(unit)] = steps
        object.__setattr__(self, "recompute", recompute)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(self.recompute)

    @cached_property
    def _computed(self) -> dict[str, frozenset[int]]:
        return {unit: frozenset(steps) for unit, steps in self.recompute.items()}

    @cached_property
    def _reused(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(u for u in self.units if step not in self._computed[u]) for step in range(self.num_steps))

    def reused_units(self, step: int) -> tuple[str, ...]:
        """The units that reuse their residual at loop iteration ``step`` (none past the last)."""
        return self._reused[step] if step < self.num_steps else ()

    @cached_property
    def _recorded(self) -> tuple[tuple[str, ...], ...]:
        computed = self._computed  # the last step has no next one, so records nothing
        kept = (
            tuple(u for u in self.units if step in computed[u] and step + 1 not in computed[u])
            for step in range(self.num_steps - 1)
        )
        return (*kept, ())

    def recorded_units(self, step: int) -> tuple[str, ...]:
        """The units computed at ``step`` whose residual the next iteration reuses: only those are kept."""
        return self._recorded[step] if step < self.num_steps else ()

    def check_fits(self, num_steps: int, units: Sequence[str]) -> None:
        """Raises a ``ValueError`` unless a run of ``num_steps`` iterations over ``units`` can use it."""
        if num_steps != self.num_steps:
            raise ValueError(
                f"`block_cache` was derived for {self.num_steps} loop iterations, but this call runs {num_steps}; "
                "profile the pipeline with the same `num_inference_steps` (and `strength`) to derive one for "
                f"{num_steps}."
            )
        unknown = [unit for unit in self.units if unit not in units]
        if unknown:
            raise ValueError(
                f"`block_cache` names units {unknown} that this U-Net does not have; its units are {list(units)}."
            )

    def to_dict(self) -> dict:
        return {
            "num_steps": self.num_steps,
            "delta": self.delta,
            "flop_fraction": self.flop_fraction,
            "recompute": {unit: list(steps) for unit, steps in self.recompute.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> BlockCacheSchedule:
        return cls(data["num_steps"], data["recompute"], data.get("delta"), data.get("flop_fraction"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> BlockCacheSchedule:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __str__(self) -> str:
        """One line per unit: ``#`` where it is computed, ``.`` where it is reused."""
        width = max(map(len, self.units))
        header = f"Block Caching schedule, {self.num_steps} steps"
        header += f", delta {self.delta:g}" if self.delta is not None else ""
        header += f", {self.flop_fraction:.1%} of the FLOPs" if self.flop_fraction is not None else ""
        reused = self._reused
        rows = [
            f"{unit:<{width}} {''.join('.' if unit in reused[s] else '#' for s in range(self.num_steps))} "
            f"{len(steps):>3}"
            for unit, steps in self.recompute.items()
        ]
        return "\n".join([header, *rows])


def derive_schedule(changes: Mapping[str, Sequence[float]], delta: float) -> BlockCacheSchedule:
    """Applies :func:`recompute_steps` to every unit's change curve (all of the same length)."""
    lengths = {len(curve) for curve in changes.values()}
    if len(lengths) != 1:
        raise ValueError(f"Every unit's change curve must have the same length, but got lengths {sorted(lengths)}.")
    return BlockCacheSchedule(
        lengths.pop(), {unit: recompute_steps(curve, delta) for unit, curve in changes.items()}, delta
    )


def flop_fraction(schedule: BlockCacheSchedule, unit_flops: Mapping[str, float], step_flops: float) -> float:
    """U-Net FLOPs of a run under ``schedule`` over those of an uncached run (a reused unit costs 0)."""
    saved = sum(unit_flops[unit] * (schedule.num_steps - len(steps)) for unit, steps in schedule.recompute.items())
    return 1 - saved / (schedule.num_steps * step_flops)
