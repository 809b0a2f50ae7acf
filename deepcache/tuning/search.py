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
    >>> result = deepcache.tune(pipe, ["a cat", "a city at night"], seeds=[0, 1], target_speedup=2,
    ...                         num_inference_steps=50, held_out_prompts=["a dog on a beach"])
    >>> print(result)                                         # the pick, its fidelity and its held-out check
    >>> image = pipe("an astronaut", **result.chosen.setting.kwargs).images[0]
    >>> result.plot("front.png"); result.save("tuning.json")
    ```
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from ..measurement import branch_step_flops, call_generators, module_flops, output_images
from ..measurement.fidelity import mean_psnr, mean_ssim
from ..models import cross_attention_names
from ..runtime import DeepCacheConfig, FewStepsWarning, GateStepWarning, branch_layout, diffusers_class, unwrap
from .costs import LoopCosts
from .families import STRATEGIES, Family
from .request import TuningRequest
from .result import TunedPoint, TuningResult, pareto_front, pick
from .setting import TunedSetting

LEVELS = (1.5, 2.0, 3.0, 4.0, 6.0)  # the speedups the front is measured at, besides the target


class BudgetSpent(Exception):
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
        held_out_prompts (`str` or `Sequence[str]`, *optional*): held-out prompts, scored only for the pick.
        held_out_seeds (`Iterable[int]`, *optional*): their seeds (default ``seeds``).
        held_out_calls (`Sequence[dict]`, *optional*): explicit held-out call arguments, instead.
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
    request = TuningRequest.of(
        pipe,
        prompts,
        seeds,
        calls=calls,
        held_out_prompts=held_out_prompts,
        held_out_seeds=held_out_seeds,
        held_out_calls=held_out_calls,
        target_speedup=target_speedup,
        max_flops=max_flops,
        min_fidelity=min_fidelity,
        metric=metric,
        families=families,
        max_evaluations=max_evaluations,
        time_budget=time_budget,
        progress=progress,
        call_kwargs=call_kwargs,
    )
    return Search(pipe, request).run(measure_time)


class Search(LoopCosts):
    """One tuning run: the request, the references, the measured points and the budget.

    The families (:mod:`deepcache.tuning.families`) propose settings through :meth:`measure` and
    read the loop's costs through :meth:`speedup`, :meth:`interval` and the like.
    """

    def __init__(self, pipe, request: TuningRequest):
        self.pipe = pipe
        self.request = request
        self.num_steps = request.num_steps
        self.target_speedup = request.target_speedup  # a FLOP budget becomes a speedup once the reference is counted
        self.families: list[Family] = [strategy() for strategy in STRATEGIES if strategy.name in request.families]
        self.generator_states = {}
        for call in [*request.calls, *(request.held_out_calls or [])]:
            for generator in call_generators(call):
                self.generator_states.setdefault(id(generator), generator.get_state())
        self.points: list[TunedPoint] = []
        self.evaluations = 0  # settings run on the calibration inputs
        self.measured: dict[str, TunedPoint] = {}
        self.counted_flops: dict[str, float] = {}
        self.stopped: str | None = None
        # Set by the reference runs, before any family runs:
        self.references: list[torch.Tensor] = []
        self.held_out_references: list[torch.Tensor] = []
        self.iterations = 0
        self.branch_flops: dict[int, tuple[int, int]] = {}
        self.full_flops = 0
        self.reference_flops = 0.0
        self.max_level = 0.0
        self.start = time.perf_counter()
        self.bar = None

    # ----- running the pipeline
    def fresh(self, call: dict) -> dict:
        """``call`` with new generators in the state the user's had at the start: every setting sees the same noise."""
        fresh = {}
        for key, value in call.items():
            if isinstance(value, torch.Generator):
                value = self._clone(value)
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Generator) for v in value):
                value = [self._clone(v) for v in value]
            fresh[key] = value
        return fresh

    def fresh_calls(self) -> list[dict]:
        return [self.fresh(call) for call in self.request.calls]

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
            warnings.simplefilter("ignore", GateStepWarning)
            cleanup.callback(self.pipe.unet.register_forward_pre_hook(counted).remove)
            output = self.pipe(**self.fresh(call), **setting.step_kwargs, output_type="np")
        return output_images(output), count, self.pipe.deepcache_record

    def _scores(self, references: list[torch.Tensor], images: list[torch.Tensor]) -> dict[str, float]:
        reference, candidate = torch.cat(references), torch.cat(images)
        scores = {"psnr": mean_psnr(reference, candidate), "ssim": mean_ssim(reference, candidate)}
        if self.request.user_metric is not None:
            scores["metric"] = float(self.request.user_metric(reference, candidate))
        return scores

    def status(self, text: str) -> None:
        """What the progress bar says the search is doing."""
        self.bar.set_postfix_str(text[:60])

    # ----- FLOPs
    def _flops(self, setting: TunedSetting, unet_calls: int, record, first_calls: int) -> float:
        """U-Net FLOPs of one run from its call count and record; counted over a real call where those cannot
        say (on the first input, once per setting, scaled by this run's U-Net calls over that one's ``first_calls``)."""
        caching = setting.caching
        if setting.gating.enabled or (setting.block_cache is not None and caching.enabled):
            key = repr(setting.to_dict())
            if key not in self.counted_flops:
                call = self.fresh(self.request.calls[0])
                self.counted_flops[key] = module_flops(
                    self.pipe.unet, self.pipe, **call, **setting.step_kwargs, output_type="np"
                )
            return self.counted_flops[key] * unet_calls / first_calls
        if setting.block_cache is not None:
            return unet_calls * self.full_flops * setting.block_cache.flop_fraction
        if record is None:
            return unet_calls * self.full_flops
        full, iterations = len(record.full_steps), record.num_iterations
        cached = self.branch_flops[self._branch(caching)][1]
        return (
            unet_calls * (full * self.full_flops + (iterations - full) * cached) / iterations
        )  # exact in integers first

    def _branch(self, caching: DeepCacheConfig) -> int:
        branch = branch_layout(self.pipe).resolve(
            caching.cache_branch_id, caching.cache_layer_id, caching.cache_block_id
        )
        return self.default_branch() if branch is None else branch

    def default_branch(self) -> int:
        return self.pipe.deepcache_defaults.cache_branch_id or 0

    # ----- measuring
    def check_budget(self) -> None:
        """Stops the search (:class:`BudgetSpent`) once the evaluation or time budget is spent."""
        if self.evaluations >= self.request.max_evaluations:
            raise BudgetSpent(f"the evaluation budget ({self.request.max_evaluations}) was spent")
        budget = self.request.time_budget
        if budget is not None and time.perf_counter() - self.start > budget:
            raise BudgetSpent(f"the time budget ({budget:g} s) was spent")

    def measure(self, family: str, setting: TunedSetting) -> TunedPoint:
        """Runs ``setting`` on every calibration input and scores it (once per setting; a family that keeps
        its own points, the pipeline's default, gets one even when another family measured the same setting)."""
        key = repr(setting.to_dict())
        if key in self.measured:
            known = self.measured[key]
            if _strategy(family).keeps_own_point and known.family != family:
                self.points.append(dataclasses.replace(known, family=family))
            return known
        self.check_budget()
        self.status(f"{family}: {setting.describe()}")
        images, flops, full_steps = [], [], []
        first_calls = None
        for call in self.request.calls:
            call_images, unet_calls, record = self._run(call, setting)
            first_calls = first_calls or unet_calls
            images.append(call_images)
            flops.append(self._flops(setting, unet_calls, record, first_calls))
            if record is not None:
                full_steps.append(len(record.full_steps))
        mean_flops = statistics.mean(flops)
        scores = self._scores(self.references, images)
        point = TunedPoint(
            family,
            setting,
            self.reference_flops / mean_flops,
            mean_flops,
            scores,
            statistics.mean(full_steps) if full_steps else None,
        )
        self.points.append(point)
        self.measured[key] = point
        self.evaluations += 1
        self.bar.update(1)
        return point

    def held_out(self, point: TunedPoint) -> TunedPoint:
        images = [self._run(call, point.setting)[0] for call in self.request.held_out_calls]
        return dataclasses.replace(point, held_out=self._scores(self.held_out_references, images))

    # ----- the search
    def run(self, measure_time: bool) -> TuningResult:
        pipe, request = self.pipe, self.request
        saved_bar = getattr(pipe, "_progress_bar_config", None)
        pipe.set_progress_bar_config(disable=True)
        self.start = time.perf_counter()
        # No total: the search ends when its ladder is measured, usually well before `max_evaluations`, so a bar
        # counting to that cap would promise a wrong end; it counts settings and says what it is doing instead.
        self.bar = tqdm(desc="DeepCache tuning", unit="setting", disable=not request.progress)
        try:
            self._references()
            self._check_target()
            try:
                self._search()
            except BudgetSpent as reason:
                self.stopped = str(reason)
            best = pick(self.points, self._target(), request.metric_name)
            if request.held_out_calls is not None and best is not None:
                self.status("held-out inputs")
                self.held_out_references = [self._run(call, self._reference())[0] for call in request.held_out_calls]
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
        # Every point's setting carries the conditions it was measured under, so any of them applies as measured.
        conditions = {"call": request.tuned_under(), "scheduler": type(pipe.scheduler).__name__}
        self.points = [dataclasses.replace(p, setting=p.setting.replace(**conditions)) for p in self.points]
        meta = {
            "pipeline": diffusers_class(type(pipe)).__name__,
            "scheduler": type(pipe.scheduler).__name__,
            "calibration_inputs": len(request.calls),
            "held_out_inputs": len(request.held_out_calls or []),
            "evaluations": self.evaluations,
            "seconds": time.perf_counter() - self.start,
            "stopped": self.stopped,
            "branch_flops": {str(b): list(f) for b, f in self.branch_flops.items()},
        }
        reference = {
            "num_inference_steps": self.num_steps,
            "flops": self.reference_flops,
            "iterations": self.iterations,
        }
        return TuningResult(self.points, best, self._target(), request.metric_name, reference, meta)

    def _reference(self) -> TunedSetting:
        return TunedSetting(self.num_steps)

    def _references(self) -> None:
        """The uncached runs, the U-Net's inputs for counting FLOPs, and the loop length."""
        inputs = []

        def capture(module, args, kwargs):
            if not inputs:
                inputs.append((args, kwargs))

        unet = unwrap(self.pipe.unet)
        self.references = []
        reference_calls = []
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(self.pipe.unet.register_forward_pre_hook(capture, with_kwargs=True).remove)
            for index, call in enumerate(self.request.calls):
                self.status(f"reference runs ({index + 1} of {len(self.request.calls)})")
                images, unet_calls, _ = self._run(call, self._reference())
                self.references.append(images)
                reference_calls.append(unet_calls)
        self.iterations = getattr(self.pipe, "_num_timesteps", None) or len(self.pipe.scheduler.timesteps)
        branches = range(branch_layout(self.pipe).num_branches)
        self.branch_flops = branch_step_flops(unet, *inputs[0], branches)
        self.full_flops = self.branch_flops[0][0]
        self.reference_flops = statistics.mean(reference_calls) * self.full_flops

    def _target(self) -> dict:
        """The target as the user gave it."""
        request = self.request
        if request.max_flops is not None:
            return {"max_flops": request.max_flops}
        if request.target_speedup is not None:
            return {"speedup": request.target_speedup}
        return {"min_fidelity": request.min_fidelity}

    def _check_target(self) -> None:
        """Targets no family can reach, or that need no speedup, fail before any candidate runs."""
        request = self.request
        fastest = self._fastest()
        if request.max_flops is not None:
            if request.max_flops >= self.reference_flops:
                raise ValueError(
                    f"`max_flops` {request.max_flops:.4g} is at or above the uncached call's "
                    f"{self.reference_flops:.4g} U-Net FLOPs: "
                    "no caching is needed for it."
                )
            self.target_speedup = self.reference_flops / request.max_flops
        if self.target_speedup is not None and self.target_speedup > fastest:
            raise ValueError(
                f"The target ({self.target_speedup:.3g}x the uncached call's FLOPs) is unreachable with the families "
                f"{list(request.families)}: the fastest reaches about {fastest:.3g}x."
            )
        if request.user_metric is not None and request.min_fidelity is not None:
            ceiling = self._scores(self.references, self.references)["metric"]
            if request.min_fidelity > ceiling:
                raise ValueError(
                    f"`min_fidelity` {request.min_fidelity:g} is above what the reference itself scores "
                    f"({ceiling:.4g})."
                )

    def _fastest(self) -> float:
        """The largest FLOP speedup the chosen families can give."""
        return max(family.reach(self) for family in self.families)

    def gates(self) -> bool:
        """Gating applies where the U-Net has cross-attention and the call guides."""
        parameters = inspect.signature(diffusers_class(type(self.pipe)).__call__).parameters
        return bool(cross_attention_names(unwrap(self.pipe.unet))) and "guidance_scale" in parameters

    def _search(self) -> None:
        """Every family at the target's speedup (the uniform search finds the branch the others use), then the
        families with a front at the other levels."""
        anchor = self.target_speedup or 2.0
        reach = float("inf") if self.request.min_fidelity is not None else max(2 * anchor, 4.0)
        levels = [anchor] + [level for level in LEVELS if level != anchor and level <= reach]
        levels = [level for level in levels if level <= self._fastest()]
        self.max_level = max(levels)
        branch = self.default_branch()
        for family in self.families:
            found = family.at_target(self, anchor, branch)
            if family.finds_branch:
                branch = found
        for level in levels[1:]:
            for family in self.families:
                family.at_level(self, level, branch)

    # ----- after the search
    def _held_out_candidates(self, best: int) -> list[int]:
        """The pick, each family's own pick and the families that keep their own points (the pipeline's
        default): their ranking is what held-out inputs test."""
        chosen = [best]
        target = self._target()
        for family in dict.fromkeys(p.family for p in self.points):
            indices = [i for i, p in enumerate(self.points) if p.family == family]
            own = pick([self.points[i] for i in indices], target, self.request.metric_name)
            if own is not None:
                chosen.append(indices[own])
            if _strategy(family).keeps_own_point:
                chosen += indices
        return list(dict.fromkeys(chosen))

    def _time_front(self, best: int | None) -> None:
        """Wall-clock speedups of the front's settings (and the pick) against the reference, interleaved, medians of
        three."""
        front = {id(p) for p in pareto_front(self.points, self.request.metric_name)}
        indices = [i for i, p in enumerate(self.points) if id(p) in front or i == best]
        call = self.request.calls[0]
        times = {i: [] for i in [-1, *indices]}
        for _ in range(3):
            for index in times:
                setting = self._reference() if index < 0 else self.points[index].setting
                start = time.perf_counter()
                self._run(call, setting)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                times[index].append(time.perf_counter() - start)
        reference = statistics.median(times[-1])
        for index in indices:
            self.points[index] = dataclasses.replace(
                self.points[index], measured_speedup=reference / statistics.median(times[index])
            )


def _strategy(name: str) -> type[Family]:
    return next(strategy for strategy in STRATEGIES if strategy.name == name)
