"""The tuner's families: one small strategy each, in a registry that the search walks in order.

A family proposes settings at a speedup level through the search's ``measure`` (which runs and
scores them); it may say how far it can reach at most. A new family is one class here and one
entry in :data:`STRATEGIES`; the search itself names no family.
"""

from __future__ import annotations

import math
from typing import Protocol

from ..measurement import calibrate_forecast, calibrate_schedule, profile_blocks
from ..runtime import DeepCacheConfig, GatingConfig, auto_forecast
from .costs import LoopCosts
from .result import TunedPoint
from .setting import TunedSetting

COMBINED_STEP_SHARES = (0.6, 0.8)  # fewer steps x DeepCache: shares of the user's steps tried
ADAPTIVE_PROBES = 7  # threshold bisection steps per adaptive search


class SearchContext(Protocol):
    """What a family may use of the running search (:class:`deepcache.tuning.search.Search`): the pipeline and
    request, the loop's costs (:class:`~deepcache.tuning.costs.LoopCosts`' methods) and a way to measure a setting.
    Declared here so that families depend on this contract, not on the search's module."""

    pipe: object
    request: object  # the TuningRequest (which imports this module's FAMILIES); families read its metric_name
    num_steps: int
    iterations: int
    max_level: float
    speedup = LoopCosts.speedup
    interval = LoopCosts.interval
    iterations_of = LoopCosts.iterations_of
    full_budget = LoopCosts.full_budget
    branches = LoopCosts.branches
    cheapest_branch = LoopCosts.cheapest_branch

    def measure(self, family: str, setting: TunedSetting) -> TunedPoint: ...

    def status(self, text: str) -> None: ...

    def check_budget(self) -> None: ...

    def fresh_calls(self) -> list[dict]: ...

    def gates(self) -> bool: ...

    def default_branch(self) -> int: ...


class Family:
    """One way of making a call cheaper. ``name`` is what results and ``families=`` call it."""

    name: str
    keeps_own_point = False  # a point of its own even when another family measured the same setting
    finds_branch = False  # its search at the target returns the DeepCache branch the others use

    def at_target(self, search: SearchContext, level: float, branch: int) -> int | None:
        """Measures this family's settings at the target's speedup (the front's anchor)."""

    def at_level(self, search: SearchContext, level: float, branch: int) -> None:
        """Measures this family's settings at another speedup of the front (default: none)."""

    def reach(self, search: SearchContext) -> float:
        """The largest FLOP speedup this family can give: one full step at the cheapest branch."""
        return search.speedup(search.cheapest_branch(), 1)


class FewerSteps(Family):
    name = "fewer steps"

    def at_target(self, search, level, branch):
        self.at_level(search, level, branch)

    def at_level(self, search, level, branch):
        """The most steps that reach ``level``: ``T / level``, one fewer while the counted FLOPs fall short
        (a sampler such as PLMS runs one U-Net call more than its steps)."""
        steps = math.floor(search.num_steps / level + 1e-9)
        while 1 <= steps < search.num_steps and search.measure(self.name, TunedSetting(steps)).speedup < level * (
            1 - 1e-9
        ):
            steps -= 1

    def reach(self, search):
        return float(search.num_steps)


class DeepCacheUniform(Family):
    name = "DeepCache uniform"
    finds_branch = True

    def at_target(self, search, level, branch):
        """Coarse to fine: a spread of branches, then the neighbours of the best while they improve."""
        branches = [b for b in search.branches() if search.interval(b, level) is not None]
        if not branches:
            return search.default_branch()
        score = {}

        def try_branch(index: int) -> None:
            if 0 <= index < len(branches) and index not in score:
                score[index] = self.measure(search, branches[index], level).scores[search.request.metric_name]

        for index in sorted({0, len(branches) // 2, len(branches) - 1}):
            try_branch(index)
        while True:
            best = max(score, key=lambda i: (score[i], -i))
            for neighbour in (best - 1, best + 1):
                try_branch(neighbour)
            if max(score, key=lambda i: (score[i], -i)) == best:
                return branches[best]

    def at_level(self, search, level, branch):
        self.measure(search, branch, level)
        shallowest = search.branches()[:1]
        if shallowest and shallowest[0] != branch:
            self.measure(search, shallowest[0], level)

    def measure(self, search, branch: int, level: float):
        interval = search.interval(branch, level)
        if interval is None:
            return None
        return search.measure(self.name, TunedSetting(search.num_steps, DeepCacheConfig(interval, branch)))


class PipelineDefault(Family):
    name = "pipeline default"
    keeps_own_point = True

    def at_target(self, search, level, branch):
        if search.pipe.deepcache_defaults.enabled:
            search.measure(self.name, TunedSetting(search.num_steps, search.pipe.deepcache_defaults))


class DeepCacheNonUniform(Family):
    name = "DeepCache non-uniform"

    def at_target(self, search, level, branch):
        self.at_level(search, level, branch)

    def at_level(self, search, level, branch):
        interval = search.interval(branch, level, uniform=False)
        if interval is not None:
            setting = DeepCacheConfig(interval, branch, uniform=False)
            search.measure(self.name, TunedSetting(search.num_steps, setting))


class Calibrated(Family):
    name = "calibrated"

    def __init__(self):
        self.calibration = None  # measured once per tuning run, for runs as long as the fastest level needs

    def at_target(self, search, level, branch):
        self.at_level(search, level, branch)

    def at_level(self, search, level, branch):
        full = search.full_budget(branch, level)
        if full is None or full >= search.iterations:
            return
        if self.calibration is None or self.calibration.branch != branch:
            search.check_budget()
            search.status("calibrating a schedule")
            fewest = search.full_budget(branch, search.max_level) or 1
            longest = 2 * math.ceil(search.iterations / fewest)
            self.calibration = calibrate_schedule(
                search.pipe,
                calls=search.fresh_calls(),
                branch=branch,
                max_interval=max(2, min(search.iterations, longest)),
                num_inference_steps=search.num_steps,
                progress=False,
            )
        try:
            schedule = self.calibration.full_steps(full)
        except ValueError:  # runs longer than calibrated: this level is out of its reach
            return
        setting = DeepCacheConfig(cache_branch_id=branch, cache_full_steps=schedule)
        search.measure(self.name, TunedSetting(search.num_steps, setting))


class BlockCaching(Family):
    name = "Block Caching"

    def __init__(self):
        self.profiles = {}  # by unit kind, measured once per tuning run (None: no such units)

    def at_target(self, search, level, branch):
        self.measure(search, level, ("attentions", "all"))

    def at_level(self, search, level, branch):
        self.measure(search, level, ("attentions",))

    def measure(self, search, level: float, units: tuple[str, ...]) -> None:
        for kind in units:
            if kind not in self.profiles:
                search.status(f"Block Caching profile ({kind})")
                try:
                    self.profiles[kind] = profile_blocks(
                        search.pipe,
                        units=kind,
                        calls=search.fresh_calls(),
                        num_inference_steps=search.num_steps,
                        progress=False,
                    )
                except ValueError:  # this U-Net has no units of that kind
                    self.profiles[kind] = None
            profile = self.profiles[kind]
            if profile is not None and profile.max_speedup() >= level:
                search.measure(
                    self.name, TunedSetting(search.num_steps, block_cache=profile.schedule_for_speedup(level))
                )


class Gating(Family):
    name = "gating"

    def at_target(self, search, level, branch):
        if not search.gates():
            return
        gate = GatingConfig(max(1, round(0.4 * search.iterations)))
        search.measure(self.name, TunedSetting(search.num_steps, gating=gate))
        interval = search.interval(branch, level)
        for n in sorted({max(2, interval - 1), interval}) if interval is not None else ():
            search.measure(self.name, TunedSetting(search.num_steps, DeepCacheConfig(n, branch), gating=gate))


class Combinations(Family):
    name = "combinations"

    def at_target(self, search, level, branch):
        for share in COMBINED_STEP_SHARES:
            steps = max(1, round(share * search.num_steps))
            interval = search.interval(branch, level, steps=steps)
            if interval is not None:
                search.measure(self.name, TunedSetting(steps, DeepCacheConfig(interval, branch)))

    def reach(self, search):
        """DeepCache over its fewest steps: one full step at the cheapest branch."""
        return search.speedup(
            search.cheapest_branch(), 1, search.iterations_of(min(COMBINED_STEP_SHARES) * search.num_steps)
        )


class Adaptive(Family):
    name = "adaptive"

    def at_target(self, search, level, branch):
        """Bisects the threshold (over its logarithm) for the most full steps that still reach ``level``;
        every probe is a measured point."""
        interval = search.interval(branch, level)
        if interval is None:
            return
        low, high = 1e-4, 1e2
        for _ in range(ADAPTIVE_PROBES):
            threshold = float(f"{math.sqrt(low * high):.3g}")
            setting = DeepCacheConfig(min(2 * interval, search.iterations), branch, cache_threshold=threshold)
            point = search.measure(self.name, TunedSetting(search.num_steps, setting))
            if point.speedup >= level:
                if point.speedup <= 1.05 * level:
                    return
                high = threshold
            else:
                low = threshold


class Forecast(Family):
    """DeepCache at the uniform search's branch and interval, feeding cached steps a forecast instead of the stored
    feature: the ``"linear"`` rule, ``"auto"`` (where it is not reuse with this scheduler), and gains fitted on the
    tuning inputs (``calibrate_forecast``)."""

    name = "forecast"

    def at_target(self, search, level, branch):
        self.at_level(search, level, branch)

    def at_level(self, search, level, branch):
        interval = search.interval(branch, level)
        if interval is None:
            return
        rules = ["linear"] + (["auto"] if auto_forecast(search.pipe.scheduler).forecast != "reuse" else [])
        for rule in rules:
            search.measure(
                self.name, TunedSetting(search.num_steps, DeepCacheConfig(interval, branch, cache_forecast=rule))
            )
            search.check_budget()
        search.status("fitting a forecast")
        calibration = calibrate_forecast(
            search.pipe,
            calls=search.fresh_calls(),
            num_inference_steps=search.num_steps,
            cache_interval=interval,
            cache_branch_id=branch,
            progress=False,
        )
        if calibration.meta["chosen"] != "reuse":  # reuse is what the uniform family measured
            setting = DeepCacheConfig(interval, branch, cache_forecast=calibration)
            search.measure(self.name, TunedSetting(search.num_steps, setting))


# The search order: at the target, each family in turn (the uniform search finds the branch the later ones use).
STRATEGIES: tuple[type[Family], ...] = (
    FewerSteps,
    DeepCacheUniform,
    PipelineDefault,
    DeepCacheNonUniform,
    Calibrated,
    Forecast,
    BlockCaching,
    Gating,
    Combinations,
    Adaptive,
)
# The families' names as results and ``families=`` use them (the order they are listed to users in).
FAMILIES = tuple(
    strategy.name
    for strategy in (
        FewerSteps,
        DeepCacheUniform,
        DeepCacheNonUniform,
        Calibrated,
        Forecast,
        Adaptive,
        BlockCaching,
        Gating,
        Combinations,
        PipelineDefault,
    )
)
