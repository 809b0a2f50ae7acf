"""The loop's FLOP arithmetic that the tuner's families read: speedups, intervals and full-step budgets per branch."""

from __future__ import annotations

from ..measurement import ideal_speedup
from ..schedules import nonuniform_full_steps, uniform_full_steps

FLOP_PRUNE = 0.9  # branches whose cached call costs more than this share of a full one are not tried


class LoopCosts:
    """What a setting costs, from the reference run's counts: ``num_steps`` (the user's), ``iterations`` (the
    loop iterations they make) and ``branch_flops`` (full and cached FLOPs of one U-Net call per branch).
    :class:`deepcache.tuning.search.Search` sets them once the reference is counted."""

    num_steps: int
    iterations: int
    branch_flops: dict[int, tuple[int, int]]

    def speedup(self, branch: int, full_steps: int, iterations: int | None = None) -> float:
        """FLOP speedup of a run with ``full_steps`` full of ``iterations`` (default: the reference's) at ``branch``."""
        iterations = self.iterations if iterations is None else iterations
        full, cached = self.branch_flops[branch]
        return ideal_speedup(full, cached, iterations, full_steps) * self.iterations / iterations

    def interval(self, branch: int, level: float, uniform: bool = True, steps: int | None = None) -> int | None:
        """The smallest interval at ``branch`` whose schedule reaches ``level`` (with ``steps`` steps), if any."""
        iterations = self.iterations if steps is None else self.iterations_of(steps)
        for interval in range(2, iterations + 1):
            full = len(
                uniform_full_steps(iterations, interval) if uniform else nonuniform_full_steps(iterations, interval)
            )
            if self.speedup(branch, full, iterations) >= level:
                return interval
        return None

    def iterations_of(self, steps: int) -> int:
        """Loop iterations of a call with ``steps`` steps (in proportion, as img2img's ``strength`` keeps them)."""
        return max(1, round(steps * self.iterations / self.num_steps))

    def full_budget(self, branch: int, level: float) -> int | None:
        """The most full steps at ``branch`` that still reach ``level``."""
        counts = [k for k in range(1, self.iterations + 1) if self.speedup(branch, k) >= level]
        return max(counts) if counts else None

    def branches(self) -> list[int]:
        """Branches worth trying: a cached call saves at least a tenth; of near-equal costs the shallowest."""
        kept = []
        for branch, (full, cached) in sorted(self.branch_flops.items()):
            if cached <= FLOP_PRUNE * full and not any(
                abs(self.branch_flops[k][1] - cached) <= 0.01 * full for k in kept
            ):
                kept.append(branch)
        return kept

    def cheapest_branch(self) -> int:
        return min(self.branch_flops, key=lambda branch: self.branch_flops[branch][1])
