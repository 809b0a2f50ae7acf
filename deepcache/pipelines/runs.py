"""The state of one cached pipeline call, and how it is hooked onto the U-Net for that call only.

A pipeline call with ``cache_interval > 1`` creates a :class:`DeepCacheRun` (with ``block_cache``, a
:class:`BlockCacheRun`) and hooks it onto the U-Net for that call only. The parent's ``__call__``
runs unchanged; on each U-Net call the run adds the caching arguments and, on cached steps, what
it stored. The hooks are removed and the run dropped when the call ends, also when it raises, so
no call can see another's features.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ..models import BranchLayout, block_units, cache_aware_class
from ..schedules import BlockCacheSchedule, CacheRecord, DeepCacheConfig


class LoopRun:
    """The state of one pipeline call: which loop iteration and which U-Net call within it.

    Iterations are counted at the pipeline's step-end callback when it has one (so several U-Net
    calls in one iteration, such as separate cond/uncond passes, each keep their own cache);
    otherwise each U-Net call is one iteration. Subclasses implement the two hooks.
    """

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.counts_by_callback = False  # set by call_with_run
        self.iteration = 0
        self.call = 0  # U-Net call within the iteration

    def num_iterations(self) -> int:
        steps = getattr(self.pipeline, "_num_timesteps", None)
        return steps if steps else len(self.pipeline.scheduler.timesteps)

    def before_unet(self, unet, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        raise NotImplementedError

    def after_unet(self, unet, args: tuple, kwargs: dict, output):
        raise NotImplementedError

    def next_call(self) -> None:
        self.call += 1
        if not self.counts_by_callback:
            self.end_iteration()

    def end_iteration(self) -> None:
        self.iteration += 1
        self.call = 0


def split_output(output, field: str):
    """``(extra, output)``: a cache-aware U-Net's extra output ``field``, and the output without it.

    A tuple output carries its extras after the sample, ``features`` before ``block_residuals``; each
    run takes the last one, so a composed run takes them in reverse order.
    """
    if isinstance(output, tuple):
        return output[-1], output[:-1]
    return getattr(output, field), dataclasses.replace(output, **{field: None})


class DeepCacheRun(LoopRun):
    """One DeepCache call: the schedule's full steps and the deep features of the last full step."""

    def __init__(self, pipeline, config: DeepCacheConfig, branch: int):
        super().__init__(pipeline)
        self.config = config
        self.branch = branch
        self.full_steps: frozenset[int] | None = None
        self.features: dict[int, torch.Tensor] = {}
        self.ran_full: list[int] = []  # iterations whose first U-Net call ran the whole network
        self.iterations_seen = 0

    def before_unet(self, unet, args, kwargs):
        if self.full_steps is None:  # the loop is starting: its length is known now
            self.full_steps = frozenset(self.config.full_steps(self.num_iterations()))
        self.iterations_seen = self.iteration + 1
        cached = self.iteration not in self.full_steps and self.call in self.features
        if not cached and self.call == 0:
            self.ran_full.append(self.iteration)
        features = self.features.pop(self.call) if cached else None
        return args, {**kwargs, "cache_branch_id": self.branch, "replicate_prev_features": features}

    def after_unet(self, unet, args, kwargs, output):
        self.features[self.call], output = split_output(output, "features")
        self.next_call()
        return output

    def record(self) -> CacheRecord:
        return CacheRecord(self.iterations_seen, self.ran_full)


class AdaptiveDeepCacheRun(DeepCacheRun):
    """One adaptive DeepCache call: each iteration's first U-Net call decides, at the branch, full or cached.

    The signal is the relative L1 change of the tensor the down path produces at the branch since
    the last full step; a step is full when it reaches ``cache_threshold``, always after
    ``cache_interval`` iterations and never before ``cache_min_interval``. Later U-Net calls of the
    same iteration (separate cond/uncond passes) follow the first one's decision.
    """

    def __init__(self, pipeline, config: DeepCacheConfig, branch: int):
        super().__init__(pipeline, config, branch)
        self.reference: torch.Tensor | None = None  # the branch's tensor at the last full step
        self.signals: dict[int, float] = {}
        self.has_features = False  # whether this U-Net call was given features to replay

    def before_unet(self, unet, args, kwargs):
        self.iterations_seen = self.iteration + 1
        features = self.features.pop(self.call, None)
        self.has_features = features is not None
        return args, {**kwargs, "cache_branch_id": self.branch, "replicate_prev_features": features, "cache_refresh": self.refresh}

    @torch.compiler.disable  # a decision between compiled pieces, not traced into them
    def refresh(self, branch_tensor: torch.Tensor) -> bool:
        iteration = self.iteration
        if self.call > 0:  # the iteration's decision is made; a call without features of its own must refresh
            return not self.has_features or (bool(self.ran_full) and self.ran_full[-1] == iteration)
        if self.reference is not None:
            self.signals[iteration] = relative_l1(branch_tensor, self.reference)
        since = iteration - self.ran_full[-1] if self.ran_full else None
        if not self.has_features or since is None or since >= self.config.cache_interval:
            full = True
        elif since < self.config.cache_min_interval:
            full = False
        else:
            full = self.signals[iteration] >= self.config.cache_threshold
        if full:
            self.ran_full.append(iteration)
            self.reference = branch_tensor
        return full

    def record(self) -> CacheRecord:
        signals = [self.signals.get(i) for i in range(self.iterations_seen)]
        return CacheRecord(self.iterations_seen, self.ran_full, signals, self.config.cache_threshold)


def relative_l1(tensor: torch.Tensor, reference: torch.Tensor) -> float:
    """``mean|tensor - reference| / mean|reference|``, in float32."""
    reference = reference.float()
    return ((tensor.float() - reference).abs().mean() / reference.abs().mean().clamp_min(1e-12)).item()


class BlockCacheRun(LoopRun):
    """One Block Caching call: the schedule and the residuals that later iterations reuse."""

    def __init__(self, pipeline, schedule: BlockCacheSchedule):
        super().__init__(pipeline)
        self.schedule = schedule
        self.checked = False
        self.residuals: dict[int, dict[str, torch.Tensor]] = {}  # per U-Net call of the iteration

    def before_unet(self, unet, args, kwargs):
        if not self.checked:  # the loop is starting: its length is known now
            self.schedule.check_fits(self.num_iterations(), block_units(unwrap(unet), "all"))
            self.checked = True
        stored = self.residuals.setdefault(self.call, {})
        reused = {unit: stored[unit] for unit in self.schedule.reused_units(self.iteration) if unit in stored}
        recorded = self.schedule.recorded_units(self.iteration)
        return args, {**kwargs, "block_cache_units": recorded, "block_cache_residuals": reused}

    def after_unet(self, unet, args, kwargs, output):
        recorded, output = split_output(output, "block_residuals")
        self.residuals[self.call].update(recorded)
        self.next_call()
        return output


class ComposedRun(LoopRun):
    """DeepCache and Block Caching in one call: each run adds its arguments and takes its output."""

    def __init__(self, pipeline, deepcache: DeepCacheRun, block_cache: BlockCacheRun):
        self.runs = (deepcache, block_cache)
        super().__init__(pipeline)

    @property
    def counts_by_callback(self) -> bool:
        return self.runs[0].counts_by_callback

    @counts_by_callback.setter
    def counts_by_callback(self, value: bool) -> None:
        for run in self.runs:
            run.counts_by_callback = value

    def before_unet(self, unet, args, kwargs):
        for run in self.runs:
            args, kwargs = run.before_unet(unet, args, kwargs)
        return args, kwargs

    def after_unet(self, unet, args, kwargs, output):
        for run in reversed(self.runs):
            output = run.after_unet(unet, args, kwargs, output)
        return output

    def end_iteration(self) -> None:
        for run in self.runs:
            run.end_iteration()


def call_with_run(pipeline, parent_call, args: tuple, kwargs: dict, run: LoopRun):
    """Runs ``parent_call(*args, **kwargs)`` with ``run`` hooked onto ``pipeline.unet`` for this call only.

    The hooks are removed when the call ends, also when it raises; ``run`` is dropped with them.
    """
    unet = unwrap(pipeline.unet)
    cache_aware_class(unet).from_unet(unet)
    parameters = inspect.signature(parent_call).parameters
    run.counts_by_callback = "callback_on_step_end" in parameters
    if run.counts_by_callback:
        kwargs = _chain_step_end(kwargs, run, "callback_on_step_end_tensor_inputs" in parameters)
    with contextlib.ExitStack() as cleanup:  # hooks go on whatever object the parent calls
        cleanup.callback(pipeline.unet.register_forward_pre_hook(run.before_unet, with_kwargs=True).remove)
        cleanup.callback(pipeline.unet.register_forward_hook(run.after_unet, with_kwargs=True).remove)
        return parent_call(*args, **kwargs)


def call_with_caching(
    pipeline,
    parent_call,
    args: tuple,
    kwargs: dict,
    config: DeepCacheConfig,
    default_branch: int,
    block_cache: BlockCacheSchedule | None = None,
):
    """Runs ``parent_call(*args, **kwargs)`` with DeepCache (``config``), Block Caching (``block_cache``) or both.

    ``default_branch`` is used when ``config`` names no branch. With both off, the parent call runs
    untouched. With both on, Block Caching's schedule applies to the units each step runs: a cached
    step cuts the deep ones, a full step runs them all.
    """
    check_caching(block_cache)
    pipeline.deepcache_record = None
    block_run = BlockCacheRun(pipeline, block_cache) if block_cache is not None else None
    if not config.enabled:
        return parent_call(*args, **kwargs) if block_run is None else call_with_run(pipeline, parent_call, args, kwargs, block_run)
    branch = branch_layout(pipeline).resolve(config.cache_branch_id, config.cache_layer_id, config.cache_block_id)
    run = (AdaptiveDeepCacheRun if config.adaptive else DeepCacheRun)(pipeline, config, default_branch if branch is None else branch)
    try:
        return call_with_run(pipeline, parent_call, args, kwargs, run if block_run is None else ComposedRun(pipeline, run, block_run))
    finally:  # what the call did, for the user to inspect: a record, not state any later call reads
        pipeline.deepcache_record = run.record()


def check_caching(block_cache) -> None:
    """Refuses a ``block_cache`` that is not a schedule."""
    if block_cache is not None and not isinstance(block_cache, BlockCacheSchedule):
        raise TypeError(
            f"`block_cache` must be a BlockCacheSchedule (e.g. `profile.schedule(delta)`), but got {type(block_cache).__name__}."
        )


def _chain_step_end(kwargs: dict, run: LoopRun, takes_tensor_inputs: bool) -> dict:
    """Puts the run's iteration counter in front of the user's ``callback_on_step_end``."""
    user_callback = kwargs.get("callback_on_step_end")

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        run.end_iteration()
        return {} if user_callback is None else user_callback(pipeline, step, timestep, callback_kwargs)

    kwargs = {**kwargs, "callback_on_step_end": on_step_end}
    if takes_tensor_inputs:
        tensor_inputs = kwargs.get("callback_on_step_end_tensor_inputs", [] if user_callback is None else ["latents"])
        if isinstance(user_callback, (PipelineCallback, MultiPipelineCallbacks)):
            tensor_inputs = user_callback.tensor_inputs
        kwargs["callback_on_step_end_tensor_inputs"] = tensor_inputs
    return kwargs


def branch_layout(pipeline) -> BranchLayout:
    """The branch layout of ``pipeline.unet``; a clear ``TypeError`` for an unsupported U-Net class."""
    unet = unwrap(pipeline.unet)
    cache_aware_class(unet)
    return BranchLayout.of(unet)


def diffusers_class(pipeline_class: type) -> type:
    """The first diffusers class in ``pipeline_class``'s MRO: the pipeline DeepCache extends."""
    return next(c for c in pipeline_class.__mro__ if c.__module__.split(".")[0] == "diffusers")


def unwrap(module):
    """The module inside a ``torch.compile`` wrapper."""
    return getattr(module, "_orig_mod", module)
