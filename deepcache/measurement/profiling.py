"""Measuring a Block Caching profile: uncached pipeline runs that record each unit's residual change.

:func:`profile_blocks` runs a pipeline over a few prompts and seeds and records, per unit and loop
iteration, the relative L1 change of the unit's residual since the previous iteration,
``||r_k - r_{k-1}||_1 / ||r_{k-1}||_1``, averaged over the batch's rows and the runs, plus the
FLOPs of each unit: a :class:`deepcache.BlockCacheProfile`.

Example:
    ```py
    >>> profile = deepcache.profile_blocks(pipe, ["a cat", "a city at night"], seeds=[0, 1])
    >>> schedule = profile.schedule(delta=0.5)  # or profile.schedule_for_speedup(1.5)
    >>> image = pipe("an astronaut", block_cache=schedule).images[0]
    ```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from ..models import block_units, cache_aware, take_extra
from ..runtime import LoopRun, call_with_run, diffusers_class, refuse_helper, unwrap
from ..schedules import BlockCacheProfile
from .calls import input_calls
from .flops import unit_flops


def relative_l1(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """``||current - previous||_1 / ||previous||_1`` per row (first dimension), averaged over rows."""
    difference = (current - previous).abs().flatten(1).sum(1, dtype=torch.float32)
    size = previous.abs().flatten(1).sum(1, dtype=torch.float32)
    return (difference / size.clamp_min(torch.finfo(torch.float32).tiny)).mean()


class _ProfileRun(LoopRun):
    """One uncached pipeline call that records every unit's change per iteration."""

    def __init__(self, pipeline, units: tuple[str, ...]):
        super().__init__(pipeline)
        self.units = units
        self.previous: dict[int, dict[str, torch.Tensor]] = {}
        self.changes: dict[int, list[torch.Tensor]] = {}  # iteration -> one vector per U-Net call
        self.inputs: tuple[tuple, dict] | None = None  # the first call's, for counting FLOPs

    def before_unet(self, unet, args, kwargs):
        self.inputs = self.inputs or (args, kwargs)
        return args, {**kwargs, "block_cache_units": self.units}

    def after_unet(self, unet, args, kwargs, output):
        residuals, output = take_extra(output, "block_residuals")
        previous = self.previous.get(self.call)
        if previous is not None:
            change = torch.stack([relative_l1(residuals[unit], previous[unit]) for unit in self.units])
            self.changes.setdefault(self.iteration, []).append(change)
        self.previous[self.call] = residuals
        self.next_call()
        return output

    def curve(self) -> torch.Tensor:
        """``[iterations, units]``: the mean change over the iteration's U-Net calls, 0 at iteration 0."""
        rows = [torch.zeros(len(self.units))]
        rows += [torch.stack(self.changes[k]).mean(0).cpu() for k in range(1, len(self.changes) + 1)]
        return torch.stack(rows)


def profile_blocks(
    pipe,
    prompts: str | Sequence[str] | None = None,
    seeds: Iterable[int] = (0,),
    *,
    units: str | Sequence[str] = "attentions",
    calls: Sequence[dict] | None = None,
    progress: bool = True,
    **call_kwargs,
) -> BlockCacheProfile:
    """Runs ``pipe`` uncached and measures how much each Block Caching unit's residual changes per step.

    Every prompt runs with every seed (a CPU ``torch.Generator``), or, with ``calls``, each dict of
    call arguments runs once; ``call_kwargs`` go to every run (e.g. ``num_inference_steps=50``, which
    the schedule will be tied to). Any pipeline whose U-Net DeepCache supports works, plain diffusers
    ones included; the U-Net is left as it was found.

    Args:
        pipe (`DiffusionPipeline`): the pipeline, with the scheduler and step count you will use.
        prompts (`str` or `Sequence[str]`, *optional*): prompts; leave out for unconditional pipelines.
        seeds (`Iterable[int]`, defaults to `(0,)`): seeds, each run with every prompt.
        units (`str` or `Sequence[str]`, defaults to `"attentions"`): ``"attentions"`` (the paper's
            choice), ``"resnets"``, ``"all"``, or unit names (see :func:`deepcache.block_units`).
        calls (`Sequence[dict]`, *optional*): explicit call arguments per run, instead of prompts x seeds.
        progress (`bool`, defaults to `True`): a progress bar over the runs.
    """
    refuse_helper(pipe, "profiling it: profiles need uncached runs")
    runs = input_calls(prompts, seeds, calls, call_kwargs)
    unet = unwrap(pipe.unet)
    with cache_aware(unet):
        names = block_units(unet, units) if isinstance(units, str) else tuple(units)
        if not names:
            raise ValueError(f"This {type(unet).__name__} has no units of kind {units!r}; try `units='all'`.")
        parent_call = diffusers_class(type(pipe)).__call__.__get__(pipe)
        total, first_inputs = None, None
        for kwargs in tqdm(runs, desc="Block Caching profile", disable=not progress):
            run = _ProfileRun(pipe, names)
            call_with_run(pipe, parent_call, (), kwargs, run)
            curve = run.curve()
            if total is not None and curve.shape != total.shape:
                raise ValueError(
                    f"Every profiling run must have the same loop length, but got {len(total)} and {len(curve)}."
                )
            total = curve if total is None else total + curve
            first_inputs = first_inputs or run.inputs
        step_flops, flops = unit_flops(unet, *first_inputs, names)
    changes = {unit: (total[:, i] / len(runs)).tolist() for i, unit in enumerate(names)}
    meta = {
        "unet": type(unet).__name__.removeprefix("DeepCache"),
        "pipeline": diffusers_class(type(pipe)).__name__,
        "scheduler": type(pipe.scheduler).__name__,
    }
    return BlockCacheProfile(changes, flops, step_flops, len(runs), meta)
