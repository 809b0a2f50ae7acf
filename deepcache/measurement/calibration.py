"""Measuring a calibrated DeepCache schedule: what each cached step would cost, on the user's own calls.

:func:`calibrate_schedule` runs a pipeline uncached, keeping every U-Net call's inputs and the
branch's features, then replays each iteration ``i`` as a cached step with the features of each
earlier iteration ``j`` within ``max_interval``. The cost of that cached step is the RMS error of
its noise prediction (after classifier-free guidance, when the pipeline guides) against the
uncached one, times the change of ``sigma = sqrt((1 - abar) / abar)`` across the iteration: what a
first-order sampler carries of that error into the final latents. The result is a
:class:`deepcache.ScheduleCalibration`, whose ``full_steps(K)`` places ``K`` full steps to
minimise the summed cost (``cache_full_steps=`` applies them to a call).

Example:
    ```py
    >>> calibration = deepcache.calibrate_schedule(pipe, ["a cat", "a city at night"], num_inference_steps=50)
    >>> image = pipe("an astronaut", num_inference_steps=50, cache_full_steps=calibration.schedule(5)).images[0]
    ```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from ..models import cache_aware, take_extra
from ..runtime import (
    LoopRun,
    branch_layout,
    call_with_run,
    diffusers_class,
    refuse_helper,
    step_weights,
    unet_timestep,
    unwrap,
)
from ..schedules import ScheduleCalibration
from .calls import input_calls


class _TrajectoryRun(LoopRun):
    """One uncached pipeline call that keeps each U-Net call's inputs, output and branch features."""

    def __init__(self, pipeline, branch: int):
        super().__init__(pipeline)
        self.branch = branch
        self.calls: dict[int, list[tuple[tuple, dict, torch.Tensor, torch.Tensor]]] = {}

    def before_unet(self, unet, args, kwargs):
        return args, {**kwargs, "cache_branch_id": self.branch}

    def after_unet(self, unet, args, kwargs, output):
        features, output = take_extra(output, "features")
        sample = output[0] if isinstance(output, tuple) else output.sample
        self.calls.setdefault(self.iteration, []).append((args, kwargs, sample, features))
        self.next_call()
        return output


def calibrate_schedule(
    pipe,
    prompts: str | Sequence[str] | None = None,
    seeds: Iterable[int] = (0,),
    *,
    branch: int | None = None,
    max_interval: int = 10,
    calls: Sequence[dict] | None = None,
    progress: bool = True,
    **call_kwargs,
) -> ScheduleCalibration:
    """Measures the cost of every cached step a schedule with runs up to ``max_interval`` could contain.

    Every prompt runs with every seed (or each dict of ``calls`` once), uncached, with
    ``call_kwargs`` (use the step count and scheduler you will run); costs are averaged over runs.

    Args:
        pipe (`DiffusionPipeline`): a DeepCache pipeline, or a plain one DeepCache supports.
        prompts (`str` or `Sequence[str]`, *optional*): prompts; leave out for unconditional pipelines.
        seeds (`Iterable[int]`, defaults to `(0,)`): seeds, each run with every prompt.
        branch (`int`, *optional*): the branch to calibrate; the pipeline's default if it has one, else 0.
        max_interval (`int`, defaults to `10`): the longest run between full steps to measure.
        calls (`Sequence[dict]`, *optional*): explicit call arguments per run, instead of prompts x seeds.
        progress (`bool`, defaults to `True`): a progress bar over the runs.
    """
    refuse_helper(pipe, "calibrating: calibration needs uncached runs")
    if isinstance(max_interval, bool) or not isinstance(max_interval, int) or max_interval < 2:
        raise ValueError(f"`max_interval` must be an integer of at least 2, but got {max_interval!r}.")
    runs = input_calls(prompts, seeds, calls, call_kwargs)
    if branch is None:
        defaults = getattr(pipe, "deepcache_defaults", None)
        branch = defaults.cache_branch_id if defaults is not None and defaults.cache_branch_id is not None else 0
    branch = branch_layout(pipe).resolve(branch)
    unet = unwrap(pipe.unet)
    with cache_aware(unet):
        parent_call = diffusers_class(type(pipe)).__call__.__get__(pipe)
        totals, num_steps, weights = {}, None, None
        for kwargs in tqdm(runs, desc="DeepCache calibration", disable=not progress):
            run = _TrajectoryRun(pipe, branch)
            call_with_run(pipe, parent_call, (), kwargs, run)
            if num_steps is not None and len(run.calls) != num_steps:
                raise ValueError(
                    f"Every calibration run must have the same loop length, but got {num_steps} and {len(run.calls)}."
                )
            num_steps = len(run.calls)
            weights = step_weights(pipe.scheduler, [unet_timestep(*run.calls[i][0][:2]) for i in range(num_steps)])
            with torch.no_grad():
                for i in range(1, num_steps):
                    for j in range(max(0, i - max_interval + 1), i):
                        error = sum(
                            _cached_error(pipe, unet, call, earlier[3])
                            for call, earlier in zip(run.calls[i], run.calls[j])
                        )
                        totals.setdefault(i, {}).setdefault(j, 0.0)
                        totals[i][j] += weights[i] * error / len(runs)
    meta = {
        "pipeline": diffusers_class(type(pipe)).__name__,
        "scheduler": type(pipe.scheduler).__name__,
        "runs": len(runs),
        "max_interval": max_interval,
    }
    return ScheduleCalibration(num_steps, branch, totals, weights, meta)


def _cached_error(pipe, unet, call, features: torch.Tensor) -> float:
    """RMS error of a cached step replaying ``features``, against the uncached output, after guidance."""
    args, kwargs, sample, _ = call
    cached = unet(*args, **{**kwargs, "replicate_prev_features": features})
    cached = cached[0] if isinstance(cached, tuple) else cached.sample
    difference = _guided(pipe, cached.float()) - _guided(pipe, sample.float())
    return difference.pow(2).mean().sqrt().item()


def _guided(pipe, prediction: torch.Tensor) -> torch.Tensor:
    """The prediction after classifier-free guidance, when the pipeline guides with a scalar scale."""
    scale = getattr(pipe, "guidance_scale", None)
    if (
        not getattr(pipe, "do_classifier_free_guidance", False)
        or not isinstance(scale, (int, float))
        or len(prediction) % 2
    ):
        return prediction
    uncond, cond = prediction.chunk(2)
    return uncond + scale * (cond - uncond)
