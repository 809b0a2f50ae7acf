"""Block Caching profiles (arXiv 2312.03209, Sec. 3.2): how much each unit's residual changes per step.

:func:`profile_blocks` runs a pipeline uncached over a few prompts and seeds and records, per unit
and loop iteration, the relative L1 change of the unit's residual since the previous iteration,
``||r_k - r_{k-1}||_1 / ||r_{k-1}||_1``, averaged over the batch's rows and the runs. The
:class:`BlockCacheProfile` it returns also holds the FLOPs of each unit, so that it can derive
schedules for a threshold or for a target speedup, save to JSON and plot the curves.

Example:
    ```py
    >>> profile = deepcache.profile_blocks(pipe, ["a cat", "a city at night"], seeds=[0, 1])
    >>> schedule = profile.schedule(delta=0.5)  # or profile.schedule_for_speedup(1.5)
    >>> image = pipe("an astronaut", block_cache=schedule).images[0]
    ```
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .block_schedules import BlockCacheSchedule, derive_schedule, flop_fraction
from .blocks import block_units
from .branches import DeepCacheUNetMixin
from .flops import unit_flops
from .models import cache_aware_class
from .pipelines.base import LoopRun, _unwrap, call_with_run, diffusers_class, split_output


@dataclass(frozen=True)
class BlockCacheProfile:
    """Measured change curves and FLOPs of a pipeline's Block Caching units.

    Args:
        changes (`Mapping[str, Sequence[float]]`): unit -> ``changes[k]``, its mean relative L1 change
            from loop iteration ``k - 1`` to ``k`` (``0.0`` at ``k = 0``).
        unit_flops (`Mapping[str, int]`): FLOPs of one call of each unit within one U-Net call.
        step_flops (`int`): FLOPs of one whole U-Net call.
        runs (`int`, defaults to `1`): pipeline runs averaged.
    """

    changes: Mapping[str, tuple[float, ...]]
    unit_flops: Mapping[str, int]
    step_flops: int
    runs: int = 1
    meta: dict = field(default_factory=dict, compare=False)  # how it was measured, for the record

    def __post_init__(self):
        object.__setattr__(self, "changes", {unit: tuple(map(float, c)) for unit, c in self.changes.items()})
        missing = [unit for unit in self.changes if unit not in self.unit_flops]
        if missing:
            raise ValueError(f"`unit_flops` lacks units {missing} that `changes` has.")

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(self.changes)

    @property
    def num_steps(self) -> int:
        return len(next(iter(self.changes.values())))

    def flop_fraction(self, schedule: BlockCacheSchedule) -> float:
        """U-Net FLOPs of a run under ``schedule`` over those of an uncached run."""
        return flop_fraction(schedule, self.unit_flops, self.step_flops)

    def schedule(self, delta: float) -> BlockCacheSchedule:
        """The schedule for threshold ``delta`` (the paper uses 0.5 on its LDM); 0 caches nothing."""
        schedule = derive_schedule(self.changes, delta)
        return BlockCacheSchedule(schedule.num_steps, schedule.recompute, delta, self.flop_fraction(schedule))

    def max_speedup(self) -> float:
        """The FLOP speedup when every unit is computed only at the first iteration."""
        return 1 / self.flop_fraction(BlockCacheSchedule(self.num_steps, {unit: (0,) for unit in self.units}))

    def delta_for_speedup(self, speedup: float, tolerance: float = 1e-4) -> float:
        """The smallest ``delta`` (within ``tolerance``) whose schedule's FLOP speedup reaches ``speedup``.

        FLOPs never grow with ``delta``, so a bisection finds it. Raises a ``ValueError`` when even
        computing every unit only once would not reach it.
        """
        if isinstance(speedup, bool) or not isinstance(speedup, (int, float)) or not speedup >= 1:
            raise ValueError(f"`speedup` must be a number >= 1, but got {speedup!r}.")
        reachable = self.max_speedup()
        if speedup > reachable:
            raise ValueError(
                f"`speedup` {speedup} is out of reach: caching these {len(self.units)} units gives at most "
                f"{reachable:.3f}x in FLOPs. Profile more units (e.g. `units='all'`) or ask for less."
            )

        def reaches(delta: float) -> bool:
            return 1 / self.flop_fraction(derive_schedule(self.changes, delta)) >= speedup

        low, high = 0.0, max(sum(curve) for curve in self.changes.values())
        if reaches(low):
            return low
        while high - low > tolerance:
            middle = (low + high) / 2
            if reaches(middle):
                high = middle
            else:
                low = middle
        return high

    def schedule_for_speedup(self, speedup: float) -> BlockCacheSchedule:
        """The schedule of :meth:`delta_for_speedup`."""
        return self.schedule(self.delta_for_speedup(speedup))

    def to_dict(self) -> dict:
        return {"runs": self.runs, "step_flops": self.step_flops, "meta": self.meta,
                "unit_flops": dict(self.unit_flops), "changes": {u: list(c) for u, c in self.changes.items()}}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping) -> "BlockCacheProfile":
        return cls(data["changes"], data["unit_flops"], data["step_flops"], data.get("runs", 1), data.get("meta", {}))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "BlockCacheProfile":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, path: str | Path | None = None, schedules: Sequence[BlockCacheSchedule] = ()):
        """Change vs loop iteration, one line per unit (the paper's Fig. 3), and the schedules given.

        Needs matplotlib (``pip install "deepcache[research]"``). Saves a PNG to ``path`` if given and
        returns the figure.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError('BlockCacheProfile.plot needs matplotlib: pip install "deepcache[research]"') from error
        rows = 1 + len(schedules)
        figure, axes = plt.subplots(rows, 1, figsize=(10, 4 + 2.2 * len(schedules)), squeeze=False,
                                    gridspec_kw={"height_ratios": [2] + [1] * len(schedules)})  # fmt: skip
        colors = plt.colormaps["viridis"].resampled(max(len(self.units), 2))
        steps = range(1, self.num_steps)
        for index, (unit, curve) in enumerate(self.changes.items()):
            axes[0, 0].plot(steps, curve[1:], color=colors(index), label=unit, linewidth=1.2)
        axes[0, 0].set(yscale="log", xlim=(-0.5, self.num_steps - 0.5), xlabel="loop iteration k", ylabel="relative L1 change of residual, k-1 -> k")
        axes[0, 0].set_title(f"Block Caching profile: {len(self.units)} units, {self.runs} run(s), {self.num_steps} steps")
        axes[0, 0].legend(fontsize=6, ncol=1 + len(self.units) // 20, loc="upper left", bbox_to_anchor=(1.01, 1))
        for axis, schedule in zip(axes[1:, 0], schedules):
            for index, unit in enumerate(schedule.units):
                computed = schedule.recompute[unit]
                axis.scatter(computed, [index] * len(computed), s=6, marker="s", color=colors(index))
            axis.set(xlim=axes[0, 0].get_xlim(), yticks=[], ylabel="unit (first on top)", xlabel="loop iteration")
            axis.invert_yaxis()
            label = "schedule" if schedule.delta is None else f"delta {schedule.delta:g}"
            axis.set_title(f"{label}: iterations that compute each unit, {self.flop_fraction(schedule):.0%} of the FLOPs", fontsize=9)
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=110)
        return figure


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
        residuals, output = split_output(output, "block_residuals")
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
    if "_deepcache_helper" in vars(pipe):
        raise ValueError("Disable the pipeline's DeepCacheSDHelper before profiling it: profiles need uncached runs.")
    runs = _profile_calls(prompts, seeds, calls, call_kwargs)
    unet = _unwrap(pipe.unet)
    converted = not isinstance(unet, DeepCacheUNetMixin)
    cache_aware_class(unet).from_unet(unet)
    try:
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
                raise ValueError(f"Every profiling run must have the same loop length, but got {len(total)} and {len(curve)}.")
            total = curve if total is None else total + curve
            first_inputs = first_inputs or run.inputs
        step_flops, flops = unit_flops(unet, *first_inputs, names)
    finally:
        if converted:
            type(unet).restore(unet)
    changes = {unit: (total[:, i] / len(runs)).tolist() for i, unit in enumerate(names)}
    meta = {"unet": type(unet).__name__.removeprefix("DeepCache"), "pipeline": diffusers_class(type(pipe)).__name__,
            "scheduler": type(pipe.scheduler).__name__}  # fmt: skip
    return BlockCacheProfile(changes, flops, step_flops, len(runs), meta)


def _profile_calls(prompts, seeds, calls, call_kwargs) -> list[dict]:
    if calls is not None:
        if prompts is not None:
            raise ValueError("Pass either `prompts` (with `seeds`) or `calls`, not both.")
        if not calls or not all(isinstance(call, Mapping) for call in calls):
            raise TypeError(f"`calls` must be a non-empty sequence of dicts of call arguments, but got {calls!r}.")
        return [{**call_kwargs, **call} for call in calls]
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise TypeError(f"`seeds` must be a non-empty sequence of integers, but got {seeds!r}.")
    prompts = [prompts] if isinstance(prompts, str) or prompts is None else list(prompts)
    return [
        {**call_kwargs, **({} if prompt is None else {"prompt": prompt}), "generator": torch.Generator().manual_seed(seed)}
        for prompt in prompts
        for seed in seeds
    ]
