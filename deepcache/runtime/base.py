"""The run of one pipeline call, and the hooks that put it on the U-Net (and ControlNets) for that call only.

A :class:`LoopRun` counts loop iterations and U-Net calls; a technique's run subclasses it and
adds the U-Net's caching arguments before each call and takes its named extra output after.
:func:`call_with_run` hooks a run onto a pipeline for one parent call and removes the hooks when
the call ends, also when it raises, so no call sees another's state.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ..models import (
    VIEWS_ATTRIBUTE,
    BranchLayout,
    cache_aware,
    cache_aware_class,
    cache_aware_controlnets,
    cuttable_controlnets,
    take_extra,
)
from ..schedules import CacheRecord, forecast_depth, linear_gain, predict
from .auto_forecast import HistoryHandOver, LinearForecastWarning, auto_forecast, guided_extrapolate, linear_hurts

HELPER_ATTRIBUTE = "_deepcache_helper"  # where an enabled DeepCacheSDHelper sits on its pipeline's instance


class LoopRun:
    """The state of one pipeline call: which loop iteration and which U-Net call within it.

    An iteration ends at the pipeline's step-end callback when it has one, else when its scheduler's
    ``step`` returns, so several U-Net calls in one iteration (separate cond/uncond passes) each keep
    their own cache; a pipeline with neither is refused.

    A technique implements ``before_unet`` (the arguments it adds) and ``after_unet`` (the extra
    output it takes, by name, then :meth:`next_call`); a run that changes the call's batch also
    implements ``reshape_call`` and ``reshape_output``, which run after every run's ``before_unet``
    and before every ``after_unet``, so that composed runs give the same result in any order.
    """

    def __init__(self, pipeline):
        self.pipeline = pipeline
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

    def reshape_call(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The call as the U-Net runs it, once every run added its arguments; unchanged by default."""
        return args, kwargs

    def reshape_output(self, output):
        """The U-Net's output as the pipeline expects it, before any run takes its extras; unchanged by default."""
        return output

    def before_controlnet(self, controlnet, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """A ControlNet runs before the iteration's U-Net call; by default it runs whole."""
        return args, kwargs

    watches_steps = False
    """Whether the run reads the scheduler's ``step`` calls (:meth:`before_step`)."""

    def before_step(self, scheduler, args: tuple, kwargs: dict) -> None:
        """Called before each ``scheduler.step`` of the loop, when :attr:`watches_steps`."""

    def record(self):
        """What the run did, for the user to inspect after the call (``None``: nothing to show)."""
        return None

    def next_call(self) -> None:
        self.call += 1

    def end_iteration(self) -> None:
        self.iteration += 1
        self.call = 0


class FeatureRun(LoopRun):
    """What a DeepCache run, fixed or adaptive, keeps: its setting and branch, the deep features of the last full
    steps of each U-Net call of an iteration (as many as its forecast reads), and the iterations that ran the whole
    network (its record)."""

    def __init__(self, pipeline, config, branch: int):
        super().__init__(pipeline)
        self.config = config  # a DeepCacheConfig
        self.branch = branch
        self.depth = forecast_depth(config.cache_forecast)
        self.features: dict[int, list[tuple[int, torch.Tensor]]] = {}  # by U-Net call: (iteration, features)
        self.ran_full: list[int] = []  # iterations whose first U-Net call ran the whole network
        self.iterations_seen = 0
        self.full_call = True  # whether this U-Net call runs (or ran) the deep layers
        scheduler = getattr(pipeline, "scheduler", None)
        self.auto = auto_forecast(scheduler) if config.cache_forecast == "auto" else None
        if config.cache_forecast == "linear" and linear_hurts(scheduler):
            warnings.warn(
                "DeepCache: `cache_forecast='linear'` was measured far below reuse with "
                f"{type(scheduler).__name__} "
                "(a multistep solver extrapolates from the forecast again, and guidance multiplies its error); "
                "`cache_forecast='auto'` forecasts in a way that suits it.",
                LinearForecastWarning,
                stacklevel=2,
            )
        self.watches_steps = self.auto is not None
        self.history = HistoryHandOver() if self.auto is not None and self.auto.history else None
        self.groups: int | None = None  # guidance groups in the U-Net's batch, once a step has shown it
        self.unet_batch = 0

    def substitute(self) -> torch.Tensor | None:
        """The deep feature this U-Net call would use if cached (``None``: nothing stored for it yet)."""
        history = self.features.get(self.call)
        if history is None or self.auto is None:
            return None if history is None else predict(self.config.cache_forecast, history, self.iteration)
        k, last = history[-1]
        if self.auto.forecast == "reuse" or self.groups is None or len(history) < 2:
            return last
        j, earlier = history[-2]
        return guided_extrapolate(last, earlier, linear_gain(self.iteration, j, k), self.groups)

    def forecast_note(self) -> str:
        """With ``"auto"``, what the cached steps were fed (for the call's record)."""
        if self.auto is None:
            return ""
        if self.auto.forecast == "linear" and self.groups is None:
            return f"reuse (several U-Net calls per iteration); {self.auto.reason}"
        return self.auto.reason + (f", {self.groups} guidance groups" if self.groups and self.groups > 1 else "")

    def before_step(self, scheduler, args, kwargs):
        """``"auto"``: how many guidance groups the U-Net's batch holds, and the multistep solver's history."""
        model_output = args[0] if args else kwargs["model_output"]
        sample = args[2] if len(args) > 2 else kwargs["sample"]
        if self.call == 1 and self.unet_batch % len(sample) == 0:  # one U-Net call per iteration (else reuse)
            self.groups = self.unet_batch // len(sample)
        if self.history is not None:
            self.history.before_step(scheduler, self.iteration, self.ran_full, model_output, sample)

    def after_unet(self, unet, args, kwargs, output):
        self.unet_batch = len(unet_sample(args, kwargs))
        features, output = take_extra(output, "features")
        if self.full_call:
            history = self.features.setdefault(self.call, [])
            history.append((self.iteration, features))
            del history[: -self.depth]
        self.next_call()
        return output

    def record(self) -> CacheRecord:
        return CacheRecord(self.iterations_seen, self.ran_full, forecast=self.forecast_note())


def unet_sample(args: tuple, kwargs: dict) -> torch.Tensor:
    """The latents of one U-Net call."""
    return args[0] if args else kwargs["sample"]


def unet_timestep(args: tuple, kwargs: dict) -> float:
    """The timestep of one U-Net call, as a float."""
    value = args[1] if len(args) > 1 else kwargs.get("timestep")
    return float(value.flatten()[0]) if isinstance(value, torch.Tensor) else float(value)


def call_with_run(pipeline, parent_call, args: tuple, kwargs: dict, run: LoopRun):
    """Runs ``parent_call(*args, **kwargs)`` with ``run`` hooked onto ``pipeline.unet`` for this call only.

    The U-Net is cache-aware for the call (:func:`pipeline_unet_cache_aware`). The hooks are removed
    when the call ends, also when it raises; ``run`` is dropped with them.
    """
    parameters = inspect.signature(parent_call).parameters
    signal = iteration_signal(pipeline, parameters)
    if signal == "callback":
        kwargs = _chain_step_end(kwargs, run, "callback_on_step_end_tensor_inputs" in parameters)
    controlnets = cuttable_controlnets(unwrap(getattr(pipeline, "controlnet", None)), branch_layout(pipeline))

    def before_unet(module, call_args, call_kwargs):
        return run.reshape_call(*run.before_unet(module, call_args, call_kwargs))

    def after_unet(module, call_args, call_kwargs, output):
        return run.after_unet(module, call_args, call_kwargs, run.reshape_output(output))

    with contextlib.ExitStack() as cleanup:  # hooks go on whatever object the parent calls
        cleanup.enter_context(pipeline_unet_cache_aware(pipeline))
        cleanup.callback(pipeline.unet.register_forward_pre_hook(before_unet, with_kwargs=True).remove)
        cleanup.callback(pipeline.unet.register_forward_hook(after_unet, with_kwargs=True).remove)
        if signal == "scheduler" or run.watches_steps:
            cleanup.enter_context(_watching_steps(pipeline, run, ends_iterations=signal == "scheduler"))
        cleanup.enter_context(cache_aware_controlnets(controlnets))
        for controlnet in controlnets:
            cleanup.callback(controlnet.register_forward_pre_hook(run.before_controlnet, with_kwargs=True).remove)
        return parent_call(*args, **kwargs)


def pipeline_unet_cache_aware(pipeline):
    """``pipeline.unet`` cache-aware for the block, given back its diffusers class after, if it had one.

    A pipeline holds its plain diffusers U-Net, so its components pass to any pipeline (``from_pipe``);
    the pipeline keeps the U-Net's step views between blocks, so later calls reuse them (and
    ``torch.compile`` its graphs).
    """
    return cache_aware(unwrap(pipeline.unet), vars(pipeline).setdefault(VIEWS_ATTRIBUTE, {}))


@contextlib.contextmanager
def _watching_steps(pipeline, run: LoopRun, ends_iterations: bool):
    """For the block, the run sees each call of the scheduler's ``step`` before it runs (:meth:`LoopRun.before_step`)
    and, for a pipeline with no step-end callback (Marigold, DDPM, most older pipelines), each return ends the run's
    iteration.

    The watching ``step`` is a method of the scheduler instance with the class's signature (pipelines
    read it to pass ``eta`` and ``generator``), so a copy of the scheduler made during the call
    counts its own steps (Text2Video-Zero-SDXL swaps in a deep copy); a ``step`` the user set on the
    instance still runs. After the block no scheduler the pipeline holds keeps the watching one.
    """
    scheduler = pipeline.scheduler
    own = vars(scheduler).get("step")

    @functools.wraps(type(scheduler).step)
    def watched_step(self, *args, **kwargs):
        if run.watches_steps:
            run.before_step(self, args, kwargs)
        if own is not None and self is scheduler:
            output = own(*args, **kwargs)
        else:
            output = type(self).step(self, *args, **kwargs)
        if ends_iterations:
            run.end_iteration()
        return output

    watched_step.counts_iterations = ends_iterations
    scheduler.step = types.MethodType(watched_step, scheduler)
    try:
        yield
    finally:
        for holder in {id(s): s for s in (scheduler, getattr(pipeline, "scheduler", None))}.values():
            if getattr(vars(holder).get("step"), "__func__", None) is watched_step:
                del holder.step
        if own is not None:
            scheduler.step = own


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


REFUSED_PIPELINES = {  # pipelines whose U-Net DeepCache could cut, but whose call needs what a cached step skips
    name: (
        "LEdits++ builds its edit masks from the cross-attention maps of every step (its attention store), and a "
        "cached step does not compute the deep layers' maps; run it without caching"
    )
    for name in ("LEditsPPPipelineStableDiffusion", "LEditsPPPipelineStableDiffusionXL")
}


def iteration_signal(pipeline, call_parameters) -> str:
    """What ends a loop iteration of ``pipeline``: its step-end ``"callback"``, else its ``"scheduler"``'s ``step``;
    a ``TypeError`` for a pipeline with neither, whose loop DeepCache cannot follow."""
    if "callback_on_step_end" in call_parameters:
        return "callback"
    scheduler = getattr(pipeline, "scheduler", None)
    own = vars(scheduler).get("step") if scheduler is not None else None  # an instance's own step: a user's patch
    counting = getattr(getattr(own, "__func__", None), "counts_iterations", False)  # or the one this call set
    if callable(getattr(type(scheduler), "step", None)) and (own is None or counting):
        return "scheduler"
    raise TypeError(
        f"DeepCache counts denoising iterations at a pipeline's `callback_on_step_end` or its scheduler's `step`, "
        f"and this {type(pipeline).__name__} has neither: its loop structure cannot be followed, so it is not cached."
    )


def check_pipeline(pipeline) -> None:
    """A clear ``TypeError`` for a pipeline DeepCache cannot serve, before any denoising."""
    for cls in type(pipeline).__mro__:
        if cls.__name__ in REFUSED_PIPELINES:
            raise TypeError(f"DeepCache does not support {cls.__name__}: {REFUSED_PIPELINES[cls.__name__]}.")
    if getattr(pipeline, "unet", None) is None:
        components = getattr(pipeline, "components", {})
        denoisers = [
            f"`{name}` is a {type(module).__name__}"
            for name, module in components.items()
            if isinstance(module, torch.nn.Module) and any(k in type(module).__name__ for k in ("UNet", "Transformer"))
        ]
        raise TypeError(
            f"DeepCache caches a pipeline's `unet`, and this {type(pipeline).__name__} has none"
            + (f" ({'; '.join(denoisers)}: not a U-Net class DeepCache supports)." if denoisers else ".")
        )


def branch_layout(pipeline) -> BranchLayout:
    """The branch layout of ``pipeline.unet``; a clear ``TypeError`` for a pipeline or U-Net DeepCache cannot serve."""
    check_pipeline(pipeline)
    unet = unwrap(pipeline.unet)
    cache_aware_class(unet)
    layout = BranchLayout.of(unet)
    iteration_signal(pipeline, inspect.signature(type(pipeline).__call__).parameters)
    return layout


def diffusers_class(pipeline_class: type) -> type:
    """The pipeline DeepCache extends: the first class in ``pipeline_class``'s MRO that is a diffusers
    pipeline without DeepCache's arguments (a diffusers class, or a plain one of our own such as
    ``LDMClassConditionalPipeline``)."""
    return next(
        c for c in pipeline_class.__mro__ if issubclass(c, DiffusionPipeline) and not hasattr(c, "deepcache_defaults")
    )


def unwrap(module):
    """The module inside a ``torch.compile`` wrapper."""
    return getattr(module, "_orig_mod", module)


def enabled_helper(pipeline):
    """The ``DeepCacheSDHelper`` enabled on ``pipeline``, or ``None``."""
    return vars(pipeline).get(HELPER_ATTRIBUTE)


def refuse_helper(pipeline, doing: str) -> None:
    """A clear error when a pipeline with an enabled helper is given to work that needs its calls uncached."""
    if enabled_helper(pipeline) is not None:
        raise ValueError(f"Disable the pipeline's DeepCacheSDHelper before {doing}.")


@dataclass(frozen=True)
class Technique:
    """What a caching technique gives the runtime; ``runtime.compose.TECHNIQUES`` lists them.

    Args:
        name (`str`): a short name (``"deepcache"``).
        config (`type`): a frozen dataclass that validates itself in ``__post_init__`` and has an
            ``enabled`` property; its fields, with their defaults, annotations and the ``Args:`` of its
            docstring, become keyword-only arguments of every DeepCache pipeline call and of the helper.
        make_run (`Callable`): ``make_run(pipeline, config, defaults)`` -> the :class:`LoopRun` of one
            denoising loop, for an enabled ``config``; ``defaults`` is the pipeline's
            ``deepcache_defaults`` (or the helper's setting). It may raise for a pipeline it cannot serve.
        record (`str`, *optional*): the pipeline attribute that receives the runs' records after each call.
    """

    name: str
    config: type
    make_run: Callable
    record: str | None = None
