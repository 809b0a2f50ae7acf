"""The tuner: which setting makes this pipeline, on these inputs, fastest for a fidelity or most faithful for a speed.

:func:`tune` runs the pipeline uncached once per input (the reference), then measures candidate
settings of every family against it: fewer steps alone, DeepCache over branch and interval (uniform
and non-uniform), calibrated and adaptive schedules, Block Caching, cross-attention gating, and
combinations. Costs are U-Net FLOPs, counted exactly: per U-Net call on the ``meta`` device for full
and cached calls at each branch (their mix read from each call's ``deepcache_record``), or over a real
call where steps differ otherwise (gating, compositions). Fidelity is PSNR and SSIM against the
reference images (and a metric of the user's). The search works on a ladder of speedups, the target
first: at each level and family only the least aggressive setting that reaches it is measured, since
a faster one of the same family can only do worse; the branch is found coarse-to-fine (a spread of
branches, then neighbours of the best while they improve). The pick is then re-scored on held-out
inputs.

Example:
    ```py
    >>> result = deepcache.tune(pipe, ["a cat", "a city at night"], seeds=[0, 1], target_speedup=2, num_inference_steps=50,
    ...                         held_out_prompts=["a dog on a beach"])
    >>> print(result)                                         # the pick, its fidelity and its held-out check
    >>> image = pipe("an astronaut", **result.chosen.setting.kwargs).images[0]
    >>> result.plot("front.png"); result.save("tuning.json")
    ```
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models import cross_attention_names
from ..models.flops import branch_step_flops, ideal_speedup, module_flops
from ..pipelines import calibrate_schedule, profile_blocks
from ..pipelines.mixin import DeepCachePipelineMixin
from ..pipelines.profiling import _profile_calls
from ..pipelines.runs import FewStepsWarning, branch_layout, diffusers_class, unwrap
from ..schedules import DeepCacheConfig, nonuniform_full_steps, uniform_full_steps
from .fidelity import PSNR_CAP, mean_psnr, mean_ssim
from .result import TunedPoint, TuningResult, pareto_front, pick
from .setting import TunedSetting

FAMILIES = (
    "fewer steps",
    "DeepCache uniform",
    "DeepCache non-uniform",
    "calibrated",
    "adaptive",
    "Block Caching",
    "gating",
    "combinations",
    "pipeline default",
)
LEVELS = (1.5, 2.0, 3.0, 4.0, 6.0)  # the speedups the front is measured at, besides the target
ADAPTIVE_PROBES = 7  # threshold bisection steps per adaptive search
COMBINED_STEP_SHARES = (0.6, 0.8)  # fewer steps x DeepCache: shares of the user's steps tried
FLOP_PRUNE = 0.9  # branches whose cached call costs more than this share of a full one are not tried


class _BudgetSpent(Exception):
    """The evaluation or time budget ran out; the search stops with what it has."""


def tune(
    pipe,
    prompts: str | Sequence[str] | None = None,
    seeds: Iterable[int] = (0,),
    *,
    calls: Sequence[dict] | None = None,
    held_out_prompts: str | Sequence[str] | None = None,
    held_out_seeds: Iterable[int] | None = None,
    held_out_calls: Sequence[dict] | None = None,
    target_speedup: float | None = None,
    max_flops: float | None = None,
    min_fidelity: float | None = None,
    metric: str | Callable = "psnr",
    families: Sequence[str] | None = None,
    max_evaluations: int = 60,
    time_budget: float | None = None,
    measure_time: bool = False,
    progress: bool = True,
    **call_kwargs,
) -> TuningResult:
    """Measures settings on ``pipe`` and picks the best one for a target; see the module docstring.

    Give exactly one target. Every prompt runs with every seed (or each dict of ``calls`` once, e.g.
    with ``image=`` for img2img, inpainting or SVD), with ``call_kwargs`` (the step count, guidance and
    scheduler you will use); the held-out inputs are given the same way and only score the pick.

    Args:
        pipe (`DiffusionPipeline`): a DeepCache pipeline (``DeepCache...Pipeline.from_pipe(pipe)`` makes one).
        prompts (`str` or `Sequence[str]`, *optional*): calibration prompts; leave out for unconditional pipelines.
        seeds (`Iterable[int]`, defaults to `(0,)`): seeds, each run with every prompt.
        calls (`Sequence[dict]`, *optional*): explicit call arguments per input, instead of prompts x seeds.
        held_out_prompts, held_out_seeds, held_out_calls: the held-out inputs, as above (seeds default to ``seeds``).
        target_speedup (`float`, *optional*): the pick is the most faithful setting with at least this FLOP speedup.
        max_flops (`float`, *optional*): the same for a budget of U-Net FLOPs per call.
        min_fidelity (`float`, *optional*): the pick is the fastest setting scoring at least this.
        metric (`str` or callable, defaults to `"psnr"`): what "faithful" means: ``"psnr"`` (dB, mean
            over images, each capped at 100), ``"ssim"``, or ``metric(reference, candidate) -> float``
            on image batches (N, C, H, W) in [0, 1], higher is better.
        families (`Sequence[str]`, *optional*): the families to try (default all): any of ``FAMILIES``.
        max_evaluations (`int`, defaults to `60`): most settings measured on the calibration inputs.
        time_budget (`float`, *optional*): seconds after which no further setting is measured (then
            results depend on the machine's speed; the evaluation budget keeps them deterministic).
        measure_time (`bool`, defaults to `False`): also time the front's settings against the
            reference, interleaved, on the first input (three runs each, medians).
        progress (`bool`, defaults to `True`): a progress bar over the measurements.
    """
    tuner = _Tuner(pipe, prompts, seeds, calls, held_out_prompts, held_out_seeds, held_out_calls, target_speedup, max_flops,
                   min_fidelity, metric, families, max_evaluations, time_budget, progress, call_kwargs)  # fmt: skip
    return tuner.run(measure_time)


def _check_number(name: str, value, low: float, allow_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"`{name}` must be a number, but got {value!r}.")
    if value < low or (value == low and not allow_low):
        raise ValueError(f"`{name}` must be {'at least' if allow_low else 'greater than'} {low:g}, but got {value!r}.")


class _Tuner:
    """One tuning run: its inputs, references, measured points and budget."""

    def __init__(self, pipe, prompts, seeds, calls, held_out_prompts, held_out_seeds, held_out_calls, target_speedup, max_flops,
                 min_fidelity, metric, families, max_evaluations, time_budget, progress, call_kwargs):  # fmt: skip
        if not isinstance(pipe, DeepCachePipelineMixin):
            raise TypeError(
                f"`pipe` must be a DeepCache pipeline, but got {type(pipe).__name__}; make one with "
                f"`DeepCache{type(pipe).__name__}.from_pipe(pipe)` (it shares the weights)."
            )
        if "_deepcache_helper" in vars(pipe):
            raise ValueError("Disable the pipeline's DeepCacheSDHelper before tuning: the tuner sets caching per call.")
        targets = {"target_speedup": target_speedup, "max_flops": max_flops, "min_fidelity": min_fidelity}
        given = [name for name, value in targets.items() if value is not None]
        if len(given) != 1:
            raise ValueError(f"Give exactly one of `target_speedup`, `max_flops` and `min_fidelity`, but got {given or 'none'}.")
        if not (metric in ("psnr", "ssim") or callable(metric)):
            raise ValueError(f"`metric` must be 'psnr', 'ssim' or a callable (reference, candidate) -> float, but got {metric!r}.")
        self.metric_name = metric if isinstance(metric, str) else "metric"
        self.user_metric = None if isinstance(metric, str) else metric
        self.families = FAMILIES if families is None else tuple(families)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"`families` must name some of {list(FAMILIES)}, but got {list(self.families)}.")
        if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, int) or max_evaluations < 1:
            raise ValueError(f"`max_evaluations` must be a positive integer, but got {max_evaluations!r}.")
        if time_budget is not None:
            _check_number("time_budget", time_budget, 0)
        self.num_steps = call_kwargs.pop("num_inference_steps", None) or _default_steps(pipe)
        if target_speedup is not None:
            _check_number("target_speedup", target_speedup, 1)
            if target_speedup > self.num_steps:
                raise ValueError(
                    f"`target_speedup` {target_speedup:g} is unreachable: with {self.num_steps} steps the fastest setting "
                    f"(one step) is {self.num_steps}x; ask for at most that, or tune a run with more steps."
                )
        if max_flops is not None:
            _check_number("max_flops", max_flops, 0)
        if min_fidelity is not None:
            _check_number("min_fidelity", min_fidelity, -math.inf)
            ceiling = {"psnr": PSNR_CAP, "ssim": 1.0}.get(self.metric_name)
            if ceiling is not None and min_fidelity > ceiling:
                raise ValueError(
                    f"`min_fidelity` {min_fidelity:g} is above what the reference itself scores ({self.metric_name} {ceiling:g}); "
                    "no setting can reach it."
                )
        self.target_speedup, self.max_flops, self.min_fidelity = target_speedup, max_flops, min_fidelity
        self.pipe = pipe
        self.calls = _profile_calls(prompts, seeds, calls, call_kwargs)
        self.held_out_calls = None
        if held_out_prompts is not None or held_out_calls is not None or held_out_seeds is not None:
            held_seeds = seeds if held_out_seeds is None else held_out_seeds
            self.held_out_calls = _profile_calls(held_out_prompts, held_seeds, held_out_calls, call_kwargs)
        self.generator_states = {}
        for call in [*self.calls, *(self.held_out_calls or [])]:
            for generator in _generators(call):
                self.generator_states.setdefault(id(generator), generator.get_state())
        self.max_evaluations, self.time_budget, self.progress = max_evaluations, time_budget, progress
        self.points: list[TunedPoint] = []
        self.evaluations = 0  # settings run on the calibration inputs
        self.measured: dict[str, TunedPoint] = {}
        self.counted_flops: dict[str, float] = {}
        self.stopped: str | None = None

    # ----- running the pipeline
    def _fresh(self, call: dict) -> dict:
        """``call`` with new generators in the state the user's had at the start: every setting sees the same noise."""
        fresh = {}
        for key, value in call.items():
            if isinstance(value, torch.Generator):
                value = self._clone(value)
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Generator) for v in value):
                value = [self._clone(v) for v in value]
            fresh[key] = value
        return fresh

    def _clone(self, generator: torch.Generator) -> torch.Generator:
        clone = torch.Generator(device=generator.device)
        clone.set_state(self.generator_states[id(generator)])
        return clone

    def _run(self, call: dict, setting: TunedSetting) -> tuple[torch.Tensor, int, object]:
        """Images (N, C, H, W) in [0, 1] of one call, its U-Net call count, and its cache record."""
        count = 0

        def counted(*_):
            nonlocal count
            count += 1

        with contextlib.ExitStack() as cleanup, warnings.catch_warnings():
            warnings.simplefilter("ignore", FewStepsWarning)  # fewer steps x DeepCache may try few steps, knowingly
            cleanup.callback(self.pipe.unet.register_forward_pre_hook(counted).remove)
            output = self.pipe(**self._fresh(call), **setting.kwargs, output_type="np")
        return _images(output), count, self.pipe.deepcache_record

    def _scores(self, references: list[torch.Tensor], images: list[torch.Tensor]) -> dict[str, float]:
        reference, candidate = torch.cat(references), torch.cat(images)
        scores = {"psnr": mean_psnr(reference, candidate), "ssim": mean_ssim(reference, candidate)}
        if self.user_metric is not None:
            scores["metric"] = float(self.user_metric(reference, candidate))
        return scores

    # ----- FLOPs
    def _flops(self, setting: TunedSetting, unet_calls: int, record, first_calls: int) -> float:
        """U-Net FLOPs of one run from its call count and record; counted over a real call where those cannot
        say (on the first input, once per setting, scaled by this run's U-Net calls over that one's ``first_calls``)."""
        caching = setting.caching
        if caching.gate_step is not None or (setting.block_cache is not None and caching.enabled):
            key = repr(setting.to_dict())
            if key not in self.counted_flops:
                call = self._fresh(self.calls[0])
                self.counted_flops[key] = module_flops(self.pipe.unet, self.pipe, **call, **setting.kwargs, output_type="np")
            return self.counted_flops[key] * unet_calls / first_calls
        if setting.block_cache is not None:
            return unet_calls * self.full_flops * setting.block_cache.flop_fraction
        if record is None:
            return unet_calls * self.full_flops
        full, iterations = len(record.full_steps), record.num_iterations
        cached = self.branch_flops[self._branch(caching)][1]
        return unet_calls * (full * self.full_flops + (iterations - full) * cached) / iterations  # exact in integers first

    def _branch(self, caching: DeepCacheConfig) -> int:
        branch = branch_layout(self.pipe).resolve(caching.cache_branch_id, caching.cache_layer_id, caching.cache_block_id)
        return self._default_branch() if branch is None else branch

    def _default_branch(self) -> int:
        return self.pipe.deepcache_defaults.cache_branch_id or 0

    # ----- measuring
    def measure(self, family: str, setting: TunedSetting) -> TunedPoint:
        """Runs ``setting`` on every calibration input and scores it (once per setting; the pipeline's
        default gets its own point even when another family measured the same setting)."""
        key = repr(setting.to_dict())
        if key in self.measured:
            known = self.measured[key]
            if family == "pipeline default" and known.family != family:
                self.points.append(dataclasses.replace(known, family=family))
            return known
        if self.evaluations >= self.max_evaluations:
            raise _BudgetSpent(f"the evaluation budget ({self.max_evaluations}) was spent")
        if self.time_budget is not None and time.perf_counter() - self.start > self.time_budget:
            raise _BudgetSpent(f"the time budget ({self.time_budget:g} s) was spent")
        self.bar.set_postfix_str(f"{family}: {setting.describe()}"[:60])
        images, flops, full_steps = [], [], []
        first_calls = None
        for call in self.calls:
            call_images, unet_calls, record = self._run(call, setting)
            first_calls = first_calls or unet_calls
            images.append(call_images)
            flops.append(self._flops(setting, unet_calls, record, first_calls))
            if record is not None:
                full_steps.append(len(record.full_steps))
        mean_flops = statistics.mean(flops)
        point = TunedPoint(family, setting, self.reference_flops / mean_flops, mean_flops, self._scores(self.references, images),
                           statistics.mean(full_steps) if full_steps else None)  # fmt: skip
        self.points.append(point)
        self.measured[key] = point
        self.evaluations += 1
        self.bar.update(1)
        return point

    def held_out(self, point: TunedPoint) -> TunedPoint:
        images = [self._run(call, point.setting)[0] for call in self.held_out_calls]
        return dataclasses.replace(point, held_out=self._scores(self.held_out_references, images))

    # ----- the search
    def run(self, measure_time: bool) -> TuningResult:
        pipe = self.pipe
        saved_bar = getattr(pipe, "_progress_bar_config", None)
        pipe.set_progress_bar_config(disable=True)
        self.start = time.perf_counter()
        self.bar = tqdm(total=self.max_evaluations, desc="DeepCache tuning", disable=not self.progress)
        try:
            self._references()
            self._check_target()
            try:
                self._search()
            except _BudgetSpent as reason:
                self.stopped = str(reason)
            best = pick(self.points, self._target(), self.metric_name)
            if self.held_out_calls is not None and best is not None:
                self.bar.set_postfix_str("held-out inputs")
                self.held_out_references = [self._run(call, TunedSetting(self.num_steps))[0] for call in self.held_out_calls]
                for index in self._held_out_candidates(best):
                    self.points[index] = self.held_out(self.points[index])
            if measure_time:
                self._time_front(best)
        finally:
            self.bar.close()
            if saved_bar is None:
                vars(pipe).pop("_progress_bar_config", None)
            else:
                pipe._progress_bar_config = saved_bar
        meta = {"pipeline": diffusers_class(type(pipe)).__name__, "scheduler": type(pipe.scheduler).__name__,
                "calibration_inputs": len(self.calls), "held_out_inputs": len(self.held_out_calls or []),
                "evaluations": self.evaluations, "seconds": time.perf_counter() - self.start, "stopped": self.stopped,
                "branch_flops": {str(b): list(f) for b, f in self.branch_flops.items()}}  # fmt: skip
        reference = {"num_inference_steps": self.num_steps, "flops": self.reference_flops, "iterations": self.iterations}
        return TuningResult(self.points, best, self._target(), self.metric_name, reference, meta)

    def _references(self) -> None:
        """The uncached runs, the U-Net's inputs for counting FLOPs, and the loop length."""
        inputs = []

        def capture(module, args, kwargs):
            if not inputs:
                inputs.append((args, kwargs))

        unet = unwrap(self.pipe.unet)
        self.references = []
        self.bar.set_postfix_str("reference runs")
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(self.pipe.unet.register_forward_pre_hook(capture, with_kwargs=True).remove)
            reference_calls = []
            for call in self.calls:
                images, unet_calls, _ = self._run(call, TunedSetting(self.num_steps))
                self.references.append(images)
                reference_calls.append(unet_calls)
        self.iterations = getattr(self.pipe, "_num_timesteps", None) or len(self.pipe.scheduler.timesteps)
        branches = range(branch_layout(self.pipe).num_branches)
        self.branch_flops = branch_step_flops(unet, *inputs[0], branches)
        self.full_flops = self.branch_flops[0][0]
        self.reference_flops = statistics.mean(reference_calls) * self.full_flops

    def _target(self) -> dict:
        """The target as the user gave it."""
        if self.max_flops is not None:
            return {"max_flops": self.max_flops}
        if self.target_speedup is not None:
            return {"speedup": self.target_speedup}
        return {"min_fidelity": self.min_fidelity}

    def _check_target(self) -> None:
        """Targets no family can reach, or that need no speedup, fail before any candidate runs."""
        fastest = self._fastest()
        if self.max_flops is not None:
            if self.max_flops >= self.reference_flops:
                raise ValueError(
                    f"`max_flops` {self.max_flops:.4g} is at or above the uncached call's {self.reference_flops:.4g} U-Net FLOPs: "
                    "no caching is needed for it."
                )
            self.target_speedup = self.reference_flops / self.max_flops
        if self.target_speedup is not None and self.target_speedup > fastest:
            raise ValueError(
                f"The target ({self.target_speedup:.3g}x the uncached call's FLOPs) is unreachable with the families "
                f"{list(self.families)}: the fastest reaches about {fastest:.3g}x."
            )
        if self.user_metric is not None and self.min_fidelity is not None:
            ceiling = self._scores(self.references, self.references)["metric"]
            if self.min_fidelity > ceiling:
                raise ValueError(f"`min_fidelity` {self.min_fidelity:g} is above what the reference itself scores ({ceiling:.4g}).")

    def _fastest(self) -> float:
        """The largest FLOP speedup the chosen families can give: fewer steps down to one step, else one
        full step at the cheapest branch (over the fewest steps a combination runs, if combinations are chosen)."""
        if "fewer steps" in self.families:
            return float(self.num_steps)
        cheapest = min(self.branch_flops, key=lambda branch: self.branch_flops[branch][1])
        steps = min(COMBINED_STEP_SHARES) * self.num_steps if "combinations" in self.families else self.num_steps
        return self._speedup(cheapest, 1, self._iterations(steps))

    # ----- candidates
    def _speedup(self, branch: int, full_steps: int, iterations: int | None = None) -> float:
        """FLOP speedup of a run with ``full_steps`` full of ``iterations`` (default: the reference's) at ``branch``."""
        iterations = self.iterations if iterations is None else iterations
        full, cached = self.branch_flops[branch]
        return ideal_speedup(full, cached, iterations, full_steps) * self.iterations / iterations

    def _interval(self, branch: int, level: float, uniform: bool = True, steps: int | None = None) -> int | None:
        """The smallest interval at ``branch`` whose schedule reaches ``level`` (with ``steps`` steps), if any."""
        iterations = self.iterations if steps is None else self._iterations(steps)
        for interval in range(2, iterations + 1):
            full = len(uniform_full_steps(iterations, interval) if uniform else nonuniform_full_steps(iterations, interval))
            if self._speedup(branch, full, iterations) >= level:
                return interval
        return None

    def _iterations(self, steps: int) -> int:
        """Loop iterations of a call with ``steps`` steps (in proportion, as img2img's ``strength`` keeps them)."""
        return max(1, round(steps * self.iterations / self.num_steps))

    def _full_budget(self, branch: int, level: float) -> int | None:
        """The most full steps at ``branch`` that still reach ``level``."""
        counts = [k for k in range(1, self.iterations + 1) if self._speedup(branch, k) >= level]
        return max(counts) if counts else None

    def _branches(self) -> list[int]:
        """Branches worth trying: a cached call saves at least a tenth; of near-equal costs the shallowest."""
        kept = []
        for branch, (full, cached) in sorted(self.branch_flops.items()):
            if cached <= FLOP_PRUNE * full and not any(abs(self.branch_flops[k][1] - cached) <= 0.01 * full for k in kept):
                kept.append(branch)
        return kept

    def _uniform(self, branch: int, level: float) -> TunedPoint | None:
        interval = self._interval(branch, level)
        if interval is None:
            return None
        return self.measure("DeepCache uniform", TunedSetting(self.num_steps, DeepCacheConfig(interval, branch)))

    def _search(self) -> None:
        anchor = self.target_speedup or 2.0
        reach = math.inf if self.min_fidelity is not None else max(2 * anchor, 4.0)
        levels = [anchor] + [level for level in LEVELS if level != anchor and level <= reach]
        levels = [level for level in levels if level <= self._fastest()]
        self.max_level = max(levels)
        best_branch = self._anchor_level(anchor)
        for level in levels[1:]:
            self._level(level, best_branch)

    def _anchor_level(self, level: float) -> int:
        """Every family at the target's speedup; returns the best DeepCache branch found there."""
        if "fewer steps" in self.families:
            self._fewer_steps(level)
        branch = self._best_branch(level) if "DeepCache uniform" in self.families else self._default_branch()
        if "pipeline default" in self.families and self.pipe.deepcache_defaults.enabled:
            self.measure("pipeline default", TunedSetting(self.num_steps, self.pipe.deepcache_defaults))
        self._deepcache_families(level, branch)
        if "Block Caching" in self.families:
            self._block_caching(level)
        if "gating" in self.families and self._gates():
            gate = max(1, round(0.4 * self.iterations))
            self.measure("gating", TunedSetting(self.num_steps, DeepCacheConfig(gate_step=gate)))
            interval = self._interval(branch, level)
            for n in sorted({max(2, interval - 1), interval}) if interval is not None else ():
                self.measure("gating", TunedSetting(self.num_steps, DeepCacheConfig(n, branch, gate_step=gate)))
        if "combinations" in self.families:
            for share in COMBINED_STEP_SHARES:
                steps = max(1, round(share * self.num_steps))
                interval = self._interval(branch, level, steps=steps)
                if interval is not None:
                    self.measure("combinations", TunedSetting(steps, DeepCacheConfig(interval, branch)))
        if "adaptive" in self.families:
            self._adaptive(level, branch)
        return branch

    def _level(self, level: float, branch: int) -> None:
        """The front at another speedup: the cheaper families, at the branch the target chose."""
        if "fewer steps" in self.families:
            self._fewer_steps(level)
        if "DeepCache uniform" in self.families:
            self._uniform(branch, level)
            shallowest = self._branches()[:1]
            if shallowest and shallowest[0] != branch:
                self._uniform(shallowest[0], level)
        self._deepcache_families(level, branch)
        if "Block Caching" in self.families:
            self._block_caching(level, units=("attentions",))

    def _fewer_steps(self, level: float) -> None:
        """The most steps that reach ``level``: ``T / level``, one fewer while the counted FLOPs fall short
        (a sampler such as PLMS runs one U-Net call more than its steps)."""
        steps = math.floor(self.num_steps / level + 1e-9)
        while 1 <= steps < self.num_steps and self.measure("fewer steps", TunedSetting(steps)).speedup < level * (1 - 1e-9):
            steps -= 1

    def _best_branch(self, level: float) -> int:
        """Coarse to fine: a spread of branches, then the neighbours of the best while they improve."""
        branches = [b for b in self._branches() if self._interval(b, level) is not None]
        if not branches:
            return self._default_branch()
        score = {}

        def try_branch(index: int) -> None:
            if 0 <= index < len(branches) and index not in score:
                point = self._uniform(branches[index], level)
                score[index] = point.scores[self.metric_name]

        for index in sorted({0, len(branches) // 2, len(branches) - 1}):
            try_branch(index)
        while True:
            best = max(score, key=lambda i: (score[i], -i))
            for neighbour in (best - 1, best + 1):
                try_branch(neighbour)
            if max(score, key=lambda i: (score[i], -i)) == best:
                return branches[best]

    def _deepcache_families(self, level: float, branch: int) -> None:
        if "DeepCache non-uniform" in self.families:
            interval = self._interval(branch, level, uniform=False)
            if interval is not None:
                setting = DeepCacheConfig(interval, branch, uniform=False)
                self.measure("DeepCache non-uniform", TunedSetting(self.num_steps, setting))
        if "calibrated" in self.families:
            self._calibrated(level, branch)

    def _calibrated(self, level: float, branch: int) -> None:
        full = self._full_budget(branch, level)
        if full is None or full >= self.iterations:
            return
        calibration = getattr(self, "calibration", None)
        if calibration is None or calibration.branch != branch:  # once, for runs as long as the fastest level needs
            if self.evaluations >= self.max_evaluations:
                raise _BudgetSpent(f"the evaluation budget ({self.max_evaluations}) was spent")
            self.bar.set_postfix_str("calibrating a schedule")
            calls = [self._fresh(call) for call in self.calls]
            fewest = self._full_budget(branch, self.max_level) or 1
            longest = 2 * math.ceil(self.iterations / fewest)
            calibration = calibrate_schedule(self.pipe, calls=calls, branch=branch, max_interval=max(2, min(self.iterations, longest)),
                                             num_inference_steps=self.num_steps, progress=False)  # fmt: skip
            self.calibration = calibration
        try:
            schedule = calibration.full_steps(full)
        except ValueError:  # runs longer than calibrated: this level is out of its reach
            return
        self.measure("calibrated", TunedSetting(self.num_steps, DeepCacheConfig(cache_branch_id=branch, cache_full_steps=schedule)))

    def _block_caching(self, level: float, units: tuple[str, ...] = ("attentions", "all")) -> None:
        profiles = vars(self).setdefault("profiles", {})
        for kind in units:
            if kind not in profiles:
                self.bar.set_postfix_str(f"Block Caching profile ({kind})")
                calls = [self._fresh(call) for call in self.calls]
                try:
                    profiles[kind] = profile_blocks(self.pipe, units=kind, calls=calls, num_inference_steps=self.num_steps, progress=False)
                except ValueError:  # this U-Net has no units of that kind
                    profiles[kind] = None
            profile = profiles[kind]
            if profile is not None and profile.max_speedup() >= level:
                self.measure("Block Caching", TunedSetting(self.num_steps, block_cache=profile.schedule_for_speedup(level)))

    def _gates(self) -> bool:
        """Gating applies where the U-Net has cross-attention and the call guides."""
        parameters = inspect.signature(diffusers_class(type(self.pipe)).__call__).parameters
        return bool(cross_attention_names(unwrap(self.pipe.unet))) and "guidance_scale" in parameters

    def _adaptive(self, level: float, branch: int) -> None:
        """Bisects the threshold (over its logarithm) for the most full steps that still reach ``level``;
        every probe is a measured point."""
        interval = self._interval(branch, level)
        if interval is None:
            return
        low, high = 1e-4, 1e2
        for _ in range(ADAPTIVE_PROBES):
            threshold = float(f"{math.sqrt(low * high):.3g}")
            setting = DeepCacheConfig(min(2 * interval, self.iterations), branch, cache_threshold=threshold)
            point = self.measure("adaptive", TunedSetting(self.num_steps, setting))
            if point.speedup >= level:
                if point.speedup <= 1.05 * level:
                    return
                high = threshold
            else:
                low = threshold

    # ----- after the search
    def _held_out_candidates(self, best: int) -> list[int]:
        """The pick, each family's own pick and the pipeline's default: their ranking is what held-out inputs test."""
        chosen = [best]
        target = self._target()
        for family in dict.fromkeys(p.family for p in self.points):
            indices = [i for i, p in enumerate(self.points) if p.family == family]
            own = pick([self.points[i] for i in indices], target, self.metric_name)
            if own is not None:
                chosen.append(indices[own])
            if family == "pipeline default":
                chosen += indices
        return list(dict.fromkeys(chosen))

    def _time_front(self, best: int | None) -> None:
        """Wall-clock speedups of the front's settings (and the pick) against the reference, interleaved, medians of three."""
        front = {id(p) for p in pareto_front(self.points, self.metric_name)}
        indices = [i for i, p in enumerate(self.points) if id(p) in front or i == best]
        call = self.calls[0]
        times = {i: [] for i in [-1, *indices]}
        for _ in range(3):
            for index in times:
                setting = TunedSetting(self.num_steps) if index < 0 else self.points[index].setting
                start = time.perf_counter()
                self._run(call, setting)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                times[index].append(time.perf_counter() - start)
        reference = statistics.median(times[-1])
        for index in indices:
            self.points[index] = dataclasses.replace(self.points[index], measured_speedup=reference / statistics.median(times[index]))


def _default_steps(pipe) -> int:
    default = inspect.signature(diffusers_class(type(pipe)).__call__).parameters.get("num_inference_steps")
    if default is None or not isinstance(default.default, int):
        raise ValueError("Pass `num_inference_steps`: this pipeline's call has no default step count.")
    return default.default


def _generators(call: dict) -> list[torch.Generator]:
    found = []
    for value in call.values():
        if isinstance(value, torch.Generator):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [v for v in value if isinstance(v, torch.Generator)]
    return found


def _images(output) -> torch.Tensor:
    """A pipeline output's images or frames as (N, C, H, W) floats in [0, 1]."""
    images = output[0]
    array = np.stack([np.asarray(i) for i in images]) if isinstance(images, list) else np.asarray(images)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255
    array = array.reshape(-1, *array.shape[-3:])  # video frames: one image each
    return torch.from_numpy(np.ascontiguousarray(array)).float().permute(0, 3, 1, 2)
