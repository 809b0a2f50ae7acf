"""DeepCache (Ma et al., arXiv 2312.00858): its setting, and the run that replays deep features on cached steps.

A full step runs the whole U-Net and returns the tensor entering the branch's up layer
(``features``); a cached step runs only the shallow layers around the branch and is fed that
tensor. Which iterations are full is a fixed schedule (uniform, non-uniform, or explicit) or, with
``cache_threshold``, decided during the call (:mod:`deepcache.runtime.adaptive`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

from ..schedules import (
    ForecastCalibration,
    check_forecast,
    check_positive_int,
    check_pow,
    nonuniform_full_steps,
    uniform_full_steps,
)
from .adaptive import AdaptiveDeepCacheRun
from .base import FeatureRun, LoopRun, Technique, branch_layout


@dataclass(frozen=True)
class DeepCacheConfig:
    """How a pipeline call caches deep features (DeepCache, arXiv 2312.00858), on a fixed or adaptive schedule.

    Args:
        cache_interval (`int`, defaults to `1`): ``N``; one full step per ``N`` loop iterations on
            average. ``1`` turns caching off.
        cache_branch_id (`int`, *optional*): the cached branch in the plug-and-play helper's numbering
            (skip connection index; 0 is conv_in's output).
        cache_layer_id (`int`, *optional*): the branch in the forked pipelines' numbering, with
            ``cache_block_id``: the down block; ``(0, 0)`` is branch 1. Give either form, or neither
            for the pipeline's default.
        cache_block_id (`int`, *optional*): the layer within that down block (its layer count means
            after the downsampler).
        uniform (`bool`, defaults to `True`): full steps every ``N`` iterations; ``False`` uses the
            non-uniform schedule of the paper's Eq. 7 with ``pow`` and ``center``.
        pow (`float`, *optional*): non-uniform schedule's power (> 1), 1.4 if not given.
        center (`int`, *optional*): non-uniform schedule's centre iteration, ``round(0.3 * T)`` if not given.
        cache_threshold (`float`, *optional*): decides the full steps at run time instead (adaptive
            caching). Each iteration runs the down path to the branch and adds that tensor's relative
            L1 change since the last full step, times the step's weight (how much of an error the
            scheduler passes on), to a sum; the step is full once the sum reaches the threshold. ``0``
            makes every step full. ``cache_interval`` is then the longest run between full steps.
        cache_min_interval (`int`, defaults to `1`): adaptive caching's shortest run between full
            steps (at most ``cache_interval``).
        cache_full_steps (`tuple[int, ...]`, *optional*): an explicit schedule instead: the full loop
            iterations, 0 first (e.g. ``deepcache.calibrate_schedule(...).schedule(N)``); caching is
            on with it whatever ``cache_interval`` is.
        cut_controlnet (`bool`, defaults to `True`): on a cached step a ControlNet runs only the layers
            whose residuals the cached U-Net reads; ``False`` runs it whole (same images, slower: to
            measure what the cut saves).
        cache_forecast (`str` or `ForecastCalibration`, *optional*): what a cached step feeds in place of
            the deep feature. ``None`` or ``"reuse"``: the last full step's (DeepCache's original
            behaviour, bit for bit). ``"linear"``: the line through the last two full steps' features,
            at this step's index (reuse until two exist; one more stored feature). ``"auto"``: what was
            measured to help with the pipeline's scheduler: with DDIM, Euler, DPM-Solver++ and DEIS the
            linear forecast of the unconditional feature with the conditional one's difference carried
            (guidance multiplies that difference), and for DPM-Solver++ and DEIS a history of full steps
            only; reuse with other schedulers (``pipe.deepcache_record.forecast`` says which). A
            ``deepcache.calibrate_forecast(...)`` result: gains fitted for this pipeline, scheduler,
            step count and schedule, refused for a call it was not fitted for.
    """

    cache_interval: int = 1
    cache_branch_id: int | None = None
    cache_layer_id: int | None = None
    cache_block_id: int | None = None
    uniform: bool = True
    pow: float | None = None
    center: int | None = None
    cache_threshold: float | None = None
    cache_min_interval: int = 1
    cache_full_steps: tuple[int, ...] | None = None
    cut_controlnet: bool = True
    cache_forecast: str | ForecastCalibration | None = None

    def __post_init__(self):
        check_positive_int("cache_interval", self.cache_interval)
        check_forecast(self.cache_forecast)
        if isinstance(self.cache_forecast, ForecastCalibration) and self.cache_threshold is not None:
            raise ValueError(
                "A ForecastCalibration is fitted for a fixed schedule; adaptive caching (`cache_threshold`) takes "
                "`cache_forecast='auto'`, `'linear'` or `'reuse'`."
            )
        if not isinstance(self.uniform, bool):
            raise TypeError(f"`uniform` must be True or False, but got {self.uniform!r}.")
        if self.pow is not None:
            check_pow(self.pow)
        if self.center is not None and (
            isinstance(self.center, bool) or not isinstance(self.center, int) or self.center < 0
        ):
            raise ValueError(f"`center` must be a non-negative integer step index, but got {self.center!r}.")
        check_positive_int("cache_min_interval", self.cache_min_interval)
        if not isinstance(self.cut_controlnet, bool):
            raise TypeError(f"`cut_controlnet` must be True or False, but got {self.cut_controlnet!r}.")
        if self.cache_full_steps is not None:
            steps = self.cache_full_steps
            if (
                isinstance(steps, (str, bytes))
                or not hasattr(steps, "__iter__")
                or any(isinstance(i, bool) or not isinstance(i, int) for i in steps)
            ):
                raise TypeError(f"`cache_full_steps` must be a sequence of iteration indices, but got {steps!r}.")
            steps = tuple(steps)
            if not steps or steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:])):
                raise ValueError(
                    f"`cache_full_steps` must be increasing iteration indices starting at 0, but got {steps}."
                )
            if self.cache_threshold is not None or not self.uniform or self.pow is not None or self.center is not None:
                raise ValueError(
                    "`cache_full_steps` is a whole schedule: leave `cache_threshold`, `uniform`, `pow` and `center` at "
                    "their defaults."
                )
            object.__setattr__(self, "cache_full_steps", steps)
        if self.cache_threshold is None:
            if self.cache_min_interval != 1:
                raise ValueError(
                    "`cache_min_interval` applies to adaptive caching: pass `cache_threshold` too, "
                    f"or leave it at 1 (got {self.cache_min_interval})."
                )
            return
        threshold = self.cache_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise TypeError(
                f"`cache_threshold` must be a non-negative number or None, but got {self.cache_threshold!r}."
            )
        if self.cache_threshold < 0:
            raise ValueError(
                f"`cache_threshold` must be a non-negative number or None, but got {self.cache_threshold}."
            )
        if not self.uniform or self.pow is not None or self.center is not None:
            raise ValueError(
                "`cache_threshold` decides the full steps at run time: leave `uniform`, `pow` and `center` at their "
                "defaults."
            )
        if self.cache_min_interval > self.cache_interval:
            raise ValueError(
                f"`cache_min_interval` must be at most `cache_interval` (the longest run between full steps), "
                f"but got cache_min_interval={self.cache_min_interval} and cache_interval={self.cache_interval}."
            )

    def as_kwargs(self) -> dict:
        """The setting as keyword arguments of a DeepCache pipeline call."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def enabled(self) -> bool:
        return self.cache_interval > 1 or self.cache_full_steps is not None

    @property
    def adaptive(self) -> bool:
        return self.cache_threshold is not None

    def full_steps(self, num_steps: int) -> tuple[int, ...]:
        """The full loop iterations of a run of ``num_steps`` iterations (a fixed schedule only)."""
        if self.adaptive:
            raise ValueError(
                "An adaptive setting (`cache_threshold`) decides its full steps during the call; see "
                "`pipe.deepcache_record`."
            )
        if self.cache_full_steps is not None:
            if self.cache_full_steps[-1] >= num_steps:
                raise ValueError(
                    f"`cache_full_steps` names iteration {self.cache_full_steps[-1]}, but this call runs {num_steps} "
                    f"iterations; calibrate or write the schedule for {num_steps}."
                )
            return self.cache_full_steps
        if self.uniform:
            return uniform_full_steps(num_steps, self.cache_interval)
        return nonuniform_full_steps(num_steps, self.cache_interval, self.center, self.pow)


FEW_STEPS = 8  # a fixed schedule over fewer loop iterations than this warns


class FewStepsWarning(UserWarning):
    """A fixed DeepCache schedule caches steps of a call with very few iterations (LCM, Turbo, Lightning)."""


class DeepCacheRun(FeatureRun):
    """One DeepCache call on a fixed schedule: its full steps, and on cached steps the stored deep features (or their
    forecast)."""

    def __init__(self, pipeline, config: DeepCacheConfig, branch: int):
        super().__init__(pipeline, config, branch)
        self.full_steps: frozenset[int] | None = None

    def before_unet(self, unet, args, kwargs):
        if self.full_steps is None:  # the loop is starting: its length is known now
            self.full_steps = frozenset(self.config.full_steps(self.num_iterations()))
            self.warn_if_few_steps()
            if isinstance(self.config.cache_forecast, ForecastCalibration):
                self.config.cache_forecast.check_call(
                    self.num_iterations(),
                    sorted(self.full_steps),
                    self.branch,
                    self.pipeline.scheduler,
                    getattr(self.pipeline, "guidance_scale", None),
                )
        self.iterations_seen = self.iteration + 1
        cached = self.replays()
        self.full_call = not cached
        if not cached and self.call == 0:
            self.ran_full.append(self.iteration)
        features = self.substitute() if cached else None
        return args, {**kwargs, "cache_branch_id": self.branch, "replicate_prev_features": features}

    def replays(self) -> bool:
        """Whether this U-Net call is a cached step: the schedule says so and this call has stored features."""
        return self.full_steps is not None and self.iteration not in self.full_steps and self.call in self.features

    def before_controlnet(self, controlnet, args, kwargs):
        """On a cached step the ControlNet runs only the layers whose residuals the U-Net reads (unless told to run
        whole)."""
        return args, {
            **kwargs,
            "cache_branch_id": self.branch,
        } if self.config.cut_controlnet and self.replays() else kwargs

    def warn_if_few_steps(self) -> None:
        """Few-step models change their features a lot from one step to the next: say what caching will do.
        (A loop of a call that runs several is not the call's step count, and is not judged.)"""
        iterations = self.num_iterations()
        cached = tuple(i for i in range(iterations) if i not in self.full_steps)
        if self.loop_length is None and iterations < FEW_STEPS and cached:
            warnings.warn(
                f"DeepCache: this call runs only {iterations} denoising iterations (a few-step model or sampler such "
                "as "
                f"LCM, Turbo or Lightning?); the schedule runs {iterations - len(cached)} of them in full "
                f"{tuple(sorted(self.full_steps))} and caches {len(cached)} {cached}. Features change a lot between so "
                f"few steps, so each cached step costs visible quality for a small saving: below {FEW_STEPS} "
                "iterations "
                "prefer `cache_interval=1` (no caching) or an adaptive `cache_threshold`.",
                FewStepsWarning,
                stacklevel=2,
            )


def make_run(pipeline, config: DeepCacheConfig, defaults: DeepCacheConfig | None) -> LoopRun:
    """The loop's run: at the branch the call names, else the pipeline's default (else 0); adaptive with a threshold."""
    branch = branch_layout(pipeline).resolve(config.cache_branch_id, config.cache_layer_id, config.cache_block_id)
    if branch is None:
        branch = defaults.cache_branch_id if defaults is not None and defaults.cache_branch_id is not None else 0
    return (AdaptiveDeepCacheRun if config.adaptive else DeepCacheRun)(pipeline, config, branch)


TECHNIQUE = Technique("deepcache", DeepCacheConfig, make_run, record="deepcache_record")
