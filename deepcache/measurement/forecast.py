"""Fitting a forecast of the cached deep feature to the user's own pipeline, scheduler, step count and schedule.

:func:`calibrate_forecast` runs the calibration calls cached, with the schedule the call names. On
each cached step with two full steps behind it, it first runs the U-Net whole on that step's own
inputs: the deep feature it would compute there is the target. The gain ``a_i`` of ``F_k + a_i (F_k -
F_j)`` is the least-squares fit to the targets seen so far at that iteration (closed form, over every
calibration call; one gain, or one per channel), and the step is fed that forecast, so later steps
see the trajectory the forecast makes: the fit is unrolled. The fit is then checked on the
calibration inputs' final images against reuse (gain 0) and the ``"linear"`` rule's gains times
0.25 to 1.25 (damped or stretched); the best of them is returned, so a calibration is never worse
than reuse, nor than the linear rule, on its own inputs. (A fit in feature space is not a fit of
the images: on the emoji model the damped linear rules usually win the check.)

Example:
    ```py
    >>> calibration = deepcache.calibrate_forecast(pipe, ["a cat", "a city at night"], seeds=[0, 1],
    ...                                            num_inference_steps=50, cache_interval=3, cache_branch_id=0)
    >>> image = pipe("an astronaut", num_inference_steps=50, cache_interval=3, cache_branch_id=0,
    ...              cache_forecast=calibration).images[0]
    >>> calibration.save("forecast.json"); calibration.plot("forecast.png")
    ```
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from ..models import cache_aware
from ..runtime import caching_configs, caching_fields, call_with_run, diffusers_class, refuse_helper, unwrap
from ..runtime.deepcache import DeepCacheRun, make_run
from ..schedules import ForecastCalibration, extrapolate, linear_gains, scheduler_facts
from .calls import call_generators, input_calls, output_images
from .fidelity import mean_psnr

DAMPING = (0.25, 0.5, 0.75, 1.0, 1.25)  # multiples of the linear rule's gain checked beside the fit


class _FittingRun(DeepCacheRun):
    """A DeepCache call that, on each cached step with two full steps behind it, runs the U-Net whole on the step's
    inputs for the target, adds it to the least-squares sums, and feeds the forecast of the gains fitted so far."""

    def __init__(self, pipeline, config, branch: int, sums: dict, per_channel: bool):
        super().__init__(pipeline, dataclasses.replace(config, cache_forecast="linear"), branch)  # keeps two
        self.sums = sums  # iteration -> [sum of <target - F_k, F_k - F_j>, sum of |F_k - F_j|^2]
        self.per_channel = per_channel
        self.inputs: tuple | None = None

    def before_unet(self, unet, args, kwargs):
        self.inputs = (unet, args, kwargs)
        return super().before_unet(unet, args, kwargs)

    def substitute(self) -> torch.Tensor | None:
        history = self.features.get(self.call)
        if history is None or len(history) < 2:
            return None if history is None else history[-1][1]
        (_, earlier), (_, last) = history[-2:]
        unet, args, kwargs = self.inputs
        _, features = unwrap(unet).forward(*args, **{**kwargs, "cache_branch_id": self.branch, "return_dict": False})
        step, residual = (last - earlier).double(), (features - last).double()
        dims = [d for d in range(step.ndim) if d != 1] if self.per_channel else list(range(step.ndim))
        sums = self.sums.setdefault(self.iteration, [0.0, 0.0])
        sums[0] = sums[0] + (residual * step).sum(dims)
        sums[1] = sums[1] + (step * step).sum(dims)
        return extrapolate(last, earlier, _gain(*sums))


def _gain(numerator, denominator):
    """The least-squares gain (a number, or one per channel); 0 where the last two full steps did not differ."""
    if isinstance(denominator, torch.Tensor) and denominator.ndim:
        return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), 0.0).float()
    denominator = float(denominator)
    return float(numerator) / denominator if denominator > 0 else 0.0


def calibrate_forecast(
    pipe,
    prompts: str | Sequence[str] | None = None,
    seeds: Iterable[int] = (0,),
    *,
    calls: Sequence[dict] | None = None,
    per_channel: bool = True,
    progress: bool = True,
    **call_kwargs,
) -> ForecastCalibration:
    """Fits forecast gains for the DeepCache schedule and call that ``call_kwargs`` name, on the pipeline's scheduler.

    Every prompt runs with every seed (or each dict of ``calls`` once); ``call_kwargs`` hold the
    step count, the other call arguments and the caching setting (``cache_interval`` or
    ``cache_full_steps``, the branch): use those you will run. Each run is made nine times:
    uncached (the reference), fitting, then cached with reuse, the fit and five multiples of the
    linear rule (the check); the fitting run also runs the whole U-Net on every cached step.

    Args:
        pipe (`DiffusionPipeline`): a DeepCache pipeline, or a plain one DeepCache supports.
        prompts (`str` or `Sequence[str]`, *optional*): prompts; leave out for unconditional pipelines.
        seeds (`Iterable[int]`, defaults to `(0,)`): seeds, each run with every prompt.
        calls (`Sequence[dict]`, *optional*): explicit call arguments per run, instead of prompts x seeds.
        per_channel (`bool`, defaults to `True`): one gain per channel of the feature; ``False``: one for all.
        progress (`bool`, defaults to `True`): a progress bar over the runs.

    Returns:
        `ForecastCalibration`: the gains, what they were fitted for, and in ``meta`` which candidate was
            chosen and each candidate's mean PSNR against the uncached images of the calibration inputs.
    """
    refuse_helper(pipe, "calibrating a forecast: calibration runs its own cached calls")
    if not isinstance(per_channel, bool):
        raise TypeError(f"`per_channel` must be True or False, but got {per_channel!r}.")
    fields = caching_fields()
    configs = caching_configs({k: call_kwargs.pop(k) for k in list(call_kwargs) if k in fields})
    config = configs["deepcache"]
    if not config.enabled or config.adaptive:
        raise ValueError(
            "`calibrate_forecast` fits a forecast for a fixed DeepCache schedule: pass `cache_interval` (> 1) or "
            "`cache_full_steps`, without `cache_threshold`."
        )
    if configs["gating"].enabled or configs["block_caching"].enabled:
        raise ValueError("`calibrate_forecast` fits DeepCache alone: leave out gating and Block Caching arguments.")
    if config.cache_forecast not in (None, "reuse"):
        raise ValueError("`cache_forecast` is what `calibrate_forecast` fits: leave it out of the call arguments.")
    runs = input_calls(prompts, seeds, calls, call_kwargs)
    parent_call = diffusers_class(type(pipe)).__call__.__get__(pipe)
    if "output_type" in inspect.signature(parent_call).parameters:
        runs = [{"output_type": "np", **run} for run in runs]
    states = [[g.get_state() for g in call_generators(run)] for run in runs]  # before any call consumes them
    branch = make_run(pipe, config, getattr(pipe, "deepcache_defaults", None)).branch
    sums, shape = {}, None
    bar = tqdm(total=(4 + len(DAMPING)) * len(runs), desc="Forecast calibration", disable=not progress)

    def images(index: int, run=None) -> torch.Tensor:
        for generator, state in zip(call_generators(runs[index]), states[index]):  # the same noise every time
            generator.set_state(state)
        kwargs = runs[index]
        output = parent_call(**kwargs) if run is None else call_with_run(pipe, parent_call, (), kwargs, run)
        bar.update(1)
        return output_images(output)

    with cache_aware(unwrap(pipe.unet)), bar:
        references, reused = [], []
        for index in range(len(runs)):
            references.append(images(index))
            fitting = _FittingRun(pipe, config, branch, sums, per_channel)
            images(index, fitting)
            shape = (fitting.iterations_seen, tuple(sorted(fitting.full_steps)))
            reused.append(images(index, DeepCacheRun(pipe, config, branch)))
        guidance = getattr(pipe, "guidance_scale", None)
        reference = torch.cat(references)
        fitted = {i: _as_list(_gain(*pair)) for i, pair in sorted(sums.items())}
        linear = linear_gains(shape[1], fitted)
        candidates = {"reuse": {}, "fitted": fitted}
        candidates.update({f"linear x{c:g}": {i: [c * g] for i, g in linear.items()} for c in DAMPING})

        def calibration_of(name: str) -> ForecastCalibration:
            facts = scheduler_facts(pipe.scheduler)
            return ForecastCalibration(
                *shape, branch, candidates[name], facts, None if guidance is None else float(guidance)
            )

        def score(name: str) -> float:
            run_config = dataclasses.replace(config, cache_forecast=calibration_of(name))
            return mean_psnr(
                reference, torch.cat([images(i, DeepCacheRun(pipe, run_config, branch)) for i in range(len(runs))])
            )

        scores = {"reuse": mean_psnr(reference, torch.cat(reused))}
        scores.update({name: score(name) for name in candidates if name != "reuse"})
        chosen = max(scores, key=scores.get)  # on a tie the earlier: reuse before any forecast
        calibration = calibration_of(chosen)
    meta = {
        "pipeline": diffusers_class(type(pipe)).__name__,
        "runs": len(runs),
        "per_channel": per_channel,
        "chosen": chosen,
        "calibration_psnr": {name: round(value, 3) for name, value in scores.items()},
    }
    return dataclasses.replace(calibration, meta=meta)


def _as_list(gain) -> list[float]:
    return [float(v) for v in (gain.tolist() if isinstance(gain, torch.Tensor) else [gain])]
