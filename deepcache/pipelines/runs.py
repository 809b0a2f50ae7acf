"""The state of one cached pipeline call, and how it is hooked onto the U-Net for that call only.

A pipeline call with ``cache_interval > 1`` creates a :class:`DeepCacheRun` (with ``block_cache``, a
:class:`BlockCacheRun`) and hooks it onto the U-Net for that call only. The parent's ``__call__``
runs unchanged; on each U-Net call the run adds the caching arguments and, on cached steps, what
it stored. The hooks are removed and the run dropped when the call ends, also when it raises, so
no call can see another's features. A pipeline that runs several denoising loops in one call
(Text2Video-Zero) calls :func:`start_loop` before each: the loop gets fresh runs of its own length.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import math
import warnings
from collections.abc import Callable

import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ..models import BranchLayout, block_units, cache_aware_class, cache_aware_controlnets, cross_attention_names, cuttable_controlnets
from ..schedules import BlockCacheSchedule, CacheRecord, DeepCacheConfig


FEW_STEPS = 8  # a fixed schedule over fewer loop iterations than this warns


class FewStepsWarning(UserWarning):
    """A fixed DeepCache schedule caches steps of a call with very few iterations (LCM, Turbo, Lightning)."""


class LoopRun:
    """The state of one pipeline call: which loop iteration and which U-Net call within it.

    Iterations are counted at the pipeline's step-end callback when it has one (so several U-Net
    calls in one iteration, such as separate cond/uncond passes, each keep their own cache);
    otherwise each U-Net call is one iteration. Subclasses implement the two hooks.
    """

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.counts_by_callback = False  # set by call_with_run
        self.loop_length: int | None = None  # set for a pipeline that runs several loops; else read from it
        self.iteration = 0
        self.call = 0  # U-Net call within the iteration

    def num_iterations(self) -> int:
        if self.loop_length is not None:
            return self.loop_length
        steps = getattr(self.pipeline, "_num_timesteps", None)
        return steps if steps else len(self.pipeline.scheduler.timesteps)

    def before_unet(self, unet, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        raise NotImplementedError

    def after_unet(self, unet, args: tuple, kwargs: dict, output):
        raise NotImplementedError

    def before_controlnet(self, controlnet, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """A ControlNet runs before the iteration's U-Net call; by default it runs whole."""
        return args, kwargs

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
            self.warn_if_few_steps()
        self.iterations_seen = self.iteration + 1
        cached = self.replays()
        if not cached and self.call == 0:
            self.ran_full.append(self.iteration)
        features = self.features.pop(self.call) if cached else None
        return args, {**kwargs, "cache_branch_id": self.branch, "replicate_prev_features": features}

    def replays(self) -> bool:
        """Whether this U-Net call is a cached step: the schedule says so and this call has stored features."""
        return self.full_steps is not None and self.iteration not in self.full_steps and self.call in self.features

    def before_controlnet(self, controlnet, args, kwargs):
        """On a cached step the ControlNet runs only the layers whose residuals the U-Net reads."""
        return args, {**kwargs, "cache_branch_id": self.branch} if self.replays() else kwargs

    def warn_if_few_steps(self) -> None:
        """Few-step models change their features a lot from one step to the next: say what caching will do.
        (A loop of a call that runs several is not the call's step count, and is not judged.)"""
        iterations = self.num_iterations()
        cached = tuple(i for i in range(iterations) if i not in self.full_steps)
        if self.loop_length is None and iterations < FEW_STEPS and cached:
            warnings.warn(
                f"DeepCache: this call runs only {iterations} denoising iterations (a few-step model or sampler such as "
                f"LCM, Turbo or Lightning?); the schedule runs {iterations - len(cached)} of them in full "
                f"{tuple(sorted(self.full_steps))} and caches {len(cached)} {cached}. Features change a lot between so "
                f"few steps, so each cached step costs visible quality for a small saving: below {FEW_STEPS} iterations "
                "prefer `cache_interval=1` (no caching) or an adaptive `cache_threshold`.",
                FewStepsWarning,
                stacklevel=2,
            )

    def after_unet(self, unet, args, kwargs, output):
        self.features[self.call], output = split_output(output, "features")
        self.next_call()
        return output

    def record(self) -> CacheRecord:
        return CacheRecord(self.iterations_seen, self.ran_full)


class AdaptiveDeepCacheRun(DeepCacheRun):
    """One adaptive DeepCache call: each iteration's first U-Net call decides, at the branch, full or cached.

    The signal accumulates, over the cached iterations since the last full step, the relative L1
    change of the tensor the down path produces at the branch (against that full step's), each
    times the iteration's :func:`step_weights` weight: an estimate of the error the stale features
    have put into the result. A step is full when it reaches ``cache_threshold``, always after
    ``cache_interval`` iterations and never before ``cache_min_interval``. Later U-Net calls of the
    same iteration (separate cond/uncond passes) follow the first one's decision.
    """

    def __init__(self, pipeline, config: DeepCacheConfig, branch: int):
        super().__init__(pipeline, config, branch)
        self.reference: torch.Tensor | None = None  # the branch's tensor at the last full step
        self.signals: dict[int, float] = {}
        self.has_features = False  # whether this U-Net call was given features to replay
        self.weights: tuple[list[float], list[float]] | None = None  # the scheduler's, built once the loop has started
        self.position: int | None = -1  # the iteration's position in the scheduler's timesteps (None: not found)
        self.weight = 1.0  # the iteration's step weight, as step_weights gives it for the loop so far

    before_controlnet = LoopRun.before_controlnet  # whether a step is cached is decided inside the U-Net, after the ControlNet ran

    def before_unet(self, unet, args, kwargs):
        self.iterations_seen = self.iteration + 1
        if self.call == 0:  # step_weights one iteration at a time: the table once, the position walked forward
            if self.iteration == 0:
                self.weights = schedule_weights(self.pipeline.scheduler)
            if self.weights is not None and self.position is not None:
                self.position = next_position(self.weights[0], unet_timestep(args, kwargs), self.position)
            self.weight = 1.0 if self.weights is None or self.position is None else self.weights[1][self.position]
        features = self.features.pop(self.call, None)
        self.has_features = features is not None
        return args, {**kwargs, "cache_branch_id": self.branch, "replicate_prev_features": features, "cache_refresh": self.refresh}

    @torch.compiler.disable  # a decision between compiled pieces, not traced into them
    def refresh(self, branch_tensor: torch.Tensor) -> bool:
        iteration = self.iteration
        if self.call > 0:  # the iteration's decision is made; a call without features of its own must refresh
            return not self.has_features or (bool(self.ran_full) and self.ran_full[-1] == iteration)
        if self.reference is not None:
            reference = self.reference[-len(branch_tensor) :]  # gating may have cut the batch to its conditional half
            self.signals[iteration] = self.signals.get(iteration - 1, 0.0) * (self.ran_full[-1] != iteration - 1)
            self.signals[iteration] += self.weight * relative_l1(branch_tensor, reference)
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


def unet_timestep(args: tuple, kwargs: dict) -> float:
    """The timestep of one U-Net call, as a float."""
    value = args[1] if len(args) > 1 else kwargs.get("timestep")
    return float(value.flatten()[0]) if isinstance(value, torch.Tensor) else float(value)


def schedule_weights(scheduler) -> tuple[list[float], list[float]] | None:
    """The scheduler's timesteps and, for each, ``|sigma_k - sigma_(k+1)|`` normalised to mean 1 (sigma 0
    after the last): its ``sigmas`` where it has one per timestep, else ``sqrt((1 - abar) / abar)``
    from ``alphas_cumprod``. ``None`` for a scheduler that has neither."""
    timesteps = getattr(scheduler, "timesteps", None)
    schedule = [] if timesteps is None else [float(t) for t in timesteps]
    sigmas, alphas = getattr(scheduler, "sigmas", None), getattr(scheduler, "alphas_cumprod", None)
    if isinstance(sigmas, torch.Tensor) and len(sigmas) == len(schedule) + 1:
        sigma = [float(value) for value in sigmas[:-1]]
    elif alphas is not None:
        abar = [float(alphas[min(max(round(t), 0), len(alphas) - 1)]) for t in schedule]
        sigma = [math.sqrt((1 - a) / a) for a in abar]
    else:
        return None
    sigma.append(0.0)
    weights = [abs(sigma[k] - sigma[k + 1]) for k in range(len(schedule))]
    mean = sum(weights) / len(weights) if weights else 0.0
    return (schedule, [w / mean for w in weights]) if mean > 0 else None


def next_position(schedule: list[float], timestep: float, after: int) -> int | None:
    """The first position after ``after`` holding ``timestep`` (second-order schedulers repeat timesteps)."""
    return next((q for q in range(after + 1, len(schedule)) if math.isclose(schedule[q], timestep, rel_tol=1e-6, abs_tol=1e-6)), None)


def step_weights(scheduler, timesteps: list[float]) -> list[float]:
    """How much of a noise-prediction error each loop iteration passes on to the result.

    The :func:`schedule_weights` weight of each of ``timesteps`` (the loop's, in order) at its
    position in the scheduler's timesteps, walking forward; 1s for a scheduler without sigmas or
    where a timestep is not among its own.
    """
    table = schedule_weights(scheduler)
    positions, k = [], -1
    for t in timesteps:
        k = None if table is None else next_position(table[0], t, k)
        if k is None:
            return [1.0] * len(timesteps)
        positions.append(k)
    return [table[1][k] for k in positions]


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


class GateRun(LoopRun):
    """Cross-attention gating (T-GATE) for one call: record at the gate, replay after it.

    The first ``gate_step`` iterations compute cross-attention; the last of them records every
    layer's output. Later iterations replay those outputs. When the pipeline doubles the batch for
    classifier-free guidance (two equal halves of latents), the recorded outputs are the mean of the
    halves, as in T-GATE; the two halves then differ only by what cross-attention no longer reads,
    so later U-Net calls run once, on the conditional half, and its prediction serves both halves
    (guidance has no further effect). Tensors other runs pass (features, residuals) are cut to
    that half with the inputs.
    """

    def __init__(self, pipeline, gate_step: int):
        super().__init__(pipeline)
        unet = unwrap(pipeline.unet)
        if not cross_attention_names(unet):
            raise ValueError(f"`gate_step` gates cross-attention, but this pipeline's {type(unet).__name__} has no cross-attention layers.")
        self.gate_step = gate_step
        self.outputs: dict[int, dict[str, torch.Tensor]] = {}  # per U-Net call of the iteration
        self.halve = False

    def before_unet(self, unet, args, kwargs):
        if self.iteration < self.gate_step - 1:
            return args, kwargs
        if self.iteration == self.gate_step - 1:
            self.halve = _guided_halves(self.pipeline, args, kwargs)
            return args, {**kwargs, "cross_attention_record": True}
        if self.halve:
            batch = _sample(args, kwargs).shape[0]
            args, kwargs = _conditional_half((args, kwargs), batch)
        return args, {**kwargs, "cross_attention_replay": self.outputs[self.call]}

    def after_unet(self, unet, args, kwargs, output):
        if self.iteration == self.gate_step - 1:
            outputs, output = split_output(output, "cross_attention_outputs")
            self.outputs[self.call] = {name: _mean_of_halves(o) if self.halve else o for name, o in outputs.items()}
        elif self.iteration >= self.gate_step and self.halve:
            output = _both_halves(output)
        self.next_call()
        return output


def _sample(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["sample"]


def _guided_halves(pipeline, args, kwargs) -> bool:
    """Whether this U-Net call is a guidance batch: the pipeline guides and the latents' halves are equal."""
    sample = _sample(args, kwargs)
    if not getattr(pipeline, "do_classifier_free_guidance", False) or sample.shape[0] % 2:
        return False
    half = sample.shape[0] // 2
    return torch.equal(sample[:half], sample[half:])


def _conditional_half(tree, batch: int):
    """Every tensor in ``tree`` whose first dimension is ``batch``, cut to its second (conditional) half."""
    if isinstance(tree, torch.Tensor):
        return tree[batch // 2 :] if tree.ndim and tree.shape[0] == batch else tree
    if isinstance(tree, dict):
        return {key: _conditional_half(value, batch) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_conditional_half(value, batch) for value in tree)
    return tree


def _mean_of_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2)
    return (first + second) / 2


def _both_halves(output):
    """The U-Net's output for the halved call, its sample repeated for both halves of the guidance batch."""
    if isinstance(output, tuple):
        return (torch.cat([output[0], output[0]]), *output[1:])
    field = dataclasses.fields(output)[0].name
    return dataclasses.replace(output, **{field: torch.cat([getattr(output, field)] * 2)})


class ComposedRun(LoopRun):
    """Several techniques in one call: each run adds its arguments and takes its output, in turn."""

    def __init__(self, pipeline, *runs: LoopRun):
        self.runs = runs
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

    def before_controlnet(self, controlnet, args, kwargs):
        for run in self.runs:
            args, kwargs = run.before_controlnet(controlnet, args, kwargs)
        return args, kwargs

    def end_iteration(self) -> None:
        for run in self.runs:
            run.end_iteration()


class LoopsRun(LoopRun):
    """A call's runs, made afresh for each denoising loop it runs.

    Most pipelines run one loop. Text2Video-Zero runs three (the first frame in two, then every frame
    at a larger batch): each gets its own schedule over its own iterations, the first one full, and
    nothing stored in one loop is replayed in the next.
    """

    def __init__(self, pipeline, make: Callable[[int | None], list[LoopRun]]):
        self.make = make
        self.loops = [make(None)]  # the runs of each loop so far
        self.current = _composed(pipeline, self.loops[-1])
        super().__init__(pipeline)

    @property
    def counts_by_callback(self) -> bool:
        return self.current.counts_by_callback

    @counts_by_callback.setter
    def counts_by_callback(self, value: bool) -> None:
        self.current.counts_by_callback = value

    def start_loop(self, num_iterations: int) -> None:
        counts_by_callback = self.counts_by_callback
        runs = self.make(num_iterations)
        first = self.loops[-1][0]
        if first.iteration == 0 and first.call == 0:  # nothing ran yet: the first loop gets its length
            self.loops[-1] = runs
        else:
            self.loops.append(runs)
        self.current = _composed(self.pipeline, runs)
        self.current.counts_by_callback = counts_by_callback

    def before_unet(self, unet, args, kwargs):
        return self.current.before_unet(unet, args, kwargs)

    def after_unet(self, unet, args, kwargs, output):
        return self.current.after_unet(unet, args, kwargs, output)

    def before_controlnet(self, controlnet, args, kwargs):
        return self.current.before_controlnet(controlnet, args, kwargs)

    def end_iteration(self) -> None:
        self.current.end_iteration()


_ACTIVE_LOOPS: contextvars.ContextVar[LoopsRun | None] = contextvars.ContextVar("deepcache_active_loops", default=None)


def start_loop(num_iterations: int) -> None:
    """Called by a pipeline before each of several denoising loops in one call: the cached call in
    progress (if any) starts afresh over ``num_iterations`` iterations."""
    loops = _ACTIVE_LOOPS.get()
    if loops is not None:
        loops.start_loop(num_iterations)


class SeveralLoopsMixin:
    """For pipelines that denoise in several ``backward_loop`` calls per ``__call__`` (Text2Video-Zero:
    the first frame to ``t1``, on to ``t0``, then every frame from ``t1`` at a larger batch): each
    loop starts its caching afresh over its own iterations."""

    def backward_loop(self, *args, **kwargs):
        timesteps = inspect.signature(super().backward_loop).bind(*args, **kwargs).arguments["timesteps"]
        start_loop(len(timesteps))
        return super().backward_loop(*args, **kwargs)


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
    controlnets = cuttable_controlnets(unwrap(getattr(pipeline, "controlnet", None)), branch_layout(pipeline))
    with contextlib.ExitStack() as cleanup:  # hooks go on whatever object the parent calls
        cleanup.callback(pipeline.unet.register_forward_pre_hook(run.before_unet, with_kwargs=True).remove)
        cleanup.callback(pipeline.unet.register_forward_hook(run.after_unet, with_kwargs=True).remove)
        cleanup.enter_context(cache_aware_controlnets(controlnets))
        for controlnet in controlnets:
            cleanup.callback(controlnet.register_forward_pre_hook(run.before_controlnet, with_kwargs=True).remove)
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
    """Runs ``parent_call(*args, **kwargs)`` with DeepCache, Block Caching, cross-attention gating, or several.

    ``default_branch`` is used when ``config`` names no branch. With all off, the parent call runs
    untouched. Composed, each applies to what the others leave running: Block Caching's schedule to
    the units a step runs (a cached step cuts the deep ones), gating to the cross-attention layers.
    """
    check_caching(block_cache)
    pipeline.deepcache_record = None
    if not (config.enabled or block_cache is not None or config.gate_step is not None):
        return parent_call(*args, **kwargs)
    branch = None
    if config.enabled:
        resolved = branch_layout(pipeline).resolve(config.cache_branch_id, config.cache_layer_id, config.cache_block_id)
        branch = default_branch if resolved is None else resolved

    def loop_runs(num_iterations: int | None) -> list[LoopRun]:
        runs = []
        if config.enabled:
            runs.append((AdaptiveDeepCacheRun if config.adaptive else DeepCacheRun)(pipeline, config, branch))
        if block_cache is not None:
            runs.append(BlockCacheRun(pipeline, block_cache))
        if config.gate_step is not None:
            runs.append(GateRun(pipeline, config.gate_step))
        for run in runs:
            run.loop_length = num_iterations
        return runs

    loops = LoopsRun(pipeline, loop_runs)
    token = _ACTIVE_LOOPS.set(loops)
    try:
        return call_with_run(pipeline, parent_call, args, kwargs, loops)
    finally:  # what the call did, for the user to inspect: a record, not state any later call reads
        _ACTIVE_LOOPS.reset(token)
        if config.enabled:
            pipeline.deepcache_record = CacheRecord.concatenate([runs[0].record() for runs in loops.loops])


def _composed(pipeline, runs: list[LoopRun]) -> LoopRun:
    """The one run, or several composed in this order."""
    return runs[0] if len(runs) == 1 else ComposedRun(pipeline, *runs)


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
    """The pipeline DeepCache extends: the first class in ``pipeline_class``'s MRO that is a diffusers
    pipeline without DeepCache's arguments (a diffusers class, or a plain one of our own such as
    ``LDMClassConditionalPipeline``)."""
    return next(c for c in pipeline_class.__mro__ if issubclass(c, DiffusionPipeline) and not hasattr(c, "deepcache_defaults"))


def unwrap(module):
    """The module inside a ``torch.compile`` wrapper."""
    return getattr(module, "_orig_mod", module)
