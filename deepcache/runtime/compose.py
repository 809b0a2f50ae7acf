"""Every technique in one call: the registry, composition, and a call's runs made afresh for each denoising loop.

:data:`TECHNIQUES` lists the techniques; their configs' fields are the caching arguments of every
pipeline call, in this order. :func:`call_with_caching` builds the enabled ones' runs and hooks
them, composed, onto the U-Net for one call; with none enabled the parent call runs untouched.
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
from collections.abc import Callable, Mapping

from . import block_caching, deepcache, gating
from .base import LoopRun, Technique, call_with_run, unet_timestep

TECHNIQUES: tuple[Technique, ...] = (deepcache.TECHNIQUE, gating.TECHNIQUE, block_caching.TECHNIQUE)


def caching_fields() -> dict[str, Technique]:
    """Every caching argument's name, and the technique whose config has it."""
    return {field.name: technique for technique in TECHNIQUES for field in dataclasses.fields(technique.config)}


def caching_configs(settings: Mapping) -> dict[str, object]:
    """Each technique's validated config from caching arguments by name (the rest at their defaults).

    An argument no technique has is refused by name.
    """
    fields = caching_fields()
    unknown = [name for name in settings if name not in fields]
    if unknown:
        raise TypeError(f"Unknown caching arguments {unknown}; the caching arguments are {list(fields)}.")
    return {
        technique.name: technique.config(**{k: v for k, v in settings.items() if fields[k] is technique})
        for technique in TECHNIQUES
    }


def caching_kwargs(configs: Mapping[str, object]) -> dict:
    """The caching arguments of ``configs`` (by technique name) that differ from their defaults."""
    changed = {}
    for technique in TECHNIQUES:
        config = configs.get(technique.name)
        if config is None:
            continue
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            if value != field.default:
                changed[field.name] = value
    return changed


class ComposedRun(LoopRun):
    """Several techniques in one call: each adds its arguments and takes its named output.

    Every run's ``before_unet`` comes before any ``reshape_call``, and every ``reshape_output`` before
    any ``after_unet``: the order of the runs does not change the result.
    """

    def __init__(self, pipeline, *runs: LoopRun):
        self.runs = runs
        super().__init__(pipeline)

    def before_unet(self, unet, args, kwargs):
        for run in self.runs:
            args, kwargs = run.before_unet(unet, args, kwargs)
        return args, kwargs

    def reshape_call(self, args, kwargs):
        for run in self.runs:
            args, kwargs = run.reshape_call(args, kwargs)
        return args, kwargs

    def reshape_output(self, output):
        for run in self.runs:
            output = run.reshape_output(output)
        return output

    def after_unet(self, unet, args, kwargs, output):
        for run in self.runs:
            output = run.after_unet(unet, args, kwargs, output)
        return output

    def before_controlnet(self, controlnet, args, kwargs):
        for run in self.runs:
            args, kwargs = run.before_controlnet(controlnet, args, kwargs)
        return args, kwargs

    def end_iteration(self) -> None:
        for run in self.runs:
            run.end_iteration()

    @property
    def watches_steps(self) -> bool:
        return any(run.watches_steps for run in self.runs)

    def before_step(self, scheduler, args, kwargs) -> None:
        for run in self.runs:
            if run.watches_steps:
                run.before_step(scheduler, args, kwargs)


class LoopsRun(LoopRun):
    """A call's runs, made afresh for each denoising loop it runs.

    Most pipelines run one loop. Some run several in one call: Text2Video-Zero three (the first frame
    in two, then every frame at a larger batch, each started by :func:`start_loop`), Marigold one per
    ensemble member batch, AnimateDiff's FreeInit one per noise re-initialisation. Each gets its own
    schedule over its own iterations, the first one full, and nothing stored in one loop is replayed
    in the next. A new loop is seen where the timesteps start again: an iteration's timestep above
    the last one's, or an iteration past the end of the loop.
    """

    def __init__(self, pipeline, make: Callable[[int | None], dict[str, LoopRun]]):
        self.make = make
        self.loops = [make(None)]  # the runs of each loop so far, by technique name
        self.current = _composed(pipeline, self.loops[-1])
        self.last_timestep: float | None = None  # of the current loop's last iteration
        super().__init__(pipeline)

    def _first(self) -> LoopRun:
        """The current loop's first technique run, whose counters every run of the loop shares."""
        return next(iter(self.loops[-1].values()))

    def start_loop(self, num_iterations: int) -> None:
        runs = self.make(num_iterations)
        first = self._first()
        if first.iteration == 0 and first.call == 0:  # nothing ran yet: the first loop gets its length
            self.loops[-1] = runs
        else:
            self.loops.append(runs)
        self.current = _composed(self.pipeline, runs)
        self.last_timestep = None

    def before_unet(self, unet, args, kwargs):
        first = self._first()
        if first.call == 0:  # an iteration starts
            timestep = unet_timestep(args, kwargs)
            restarted = self.last_timestep is not None and timestep > self.last_timestep
            if restarted or (first.iteration > 0 and first.iteration >= first.num_iterations()):
                self.start_loop(None)
            self.last_timestep = timestep
        return self.current.before_unet(unet, args, kwargs)

    def reshape_call(self, args, kwargs):
        return self.current.reshape_call(args, kwargs)

    def reshape_output(self, output):
        return self.current.reshape_output(output)

    def after_unet(self, unet, args, kwargs, output):
        return self.current.after_unet(unet, args, kwargs, output)

    def before_controlnet(self, controlnet, args, kwargs):
        return self.current.before_controlnet(controlnet, args, kwargs)

    def end_iteration(self) -> None:
        self.current.end_iteration()

    @property
    def watches_steps(self) -> bool:
        return self.current.watches_steps

    def before_step(self, scheduler, args, kwargs) -> None:
        self.current.before_step(scheduler, args, kwargs)

    def records(self, name: str) -> list:
        """The records of technique ``name``'s run in each loop, in order."""
        return [runs[name].record() for runs in self.loops if name in runs]


def _composed(pipeline, runs: dict[str, LoopRun]) -> LoopRun:
    """The one run, or several composed."""
    return next(iter(runs.values())) if len(runs) == 1 else ComposedRun(pipeline, *runs.values())


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


def call_with_caching(pipeline, parent_call, args: tuple, kwargs: dict, configs: Mapping[str, object], defaults=None):
    """Runs ``parent_call(*args, **kwargs)`` with every enabled technique of ``configs`` (by technique name).

    ``defaults`` (the pipeline's ``deepcache_defaults``) fills in what a config leaves open, such as
    the branch. With none enabled, the parent call runs untouched. Composed, each applies to what the
    others leave running: Block Caching's schedule to the units a step runs (a cached step cuts the
    deep ones), gating to the cross-attention layers. After the call, each technique's records are on
    the pipeline (``pipe.deepcache_record``): what the call did, not state a later call reads.
    """
    enabled = [t for t in TECHNIQUES if configs.get(t.name) is not None and configs[t.name].enabled]
    for technique in TECHNIQUES:
        if technique.record is not None:
            setattr(pipeline, technique.record, None)
    if not enabled:
        return parent_call(*args, **kwargs)

    def loop_runs(num_iterations: int | None) -> dict[str, LoopRun]:
        runs = {t.name: t.make_run(pipeline, configs[t.name], defaults) for t in enabled}
        for run in runs.values():
            run.loop_length = num_iterations
        return runs

    loops = LoopsRun(pipeline, loop_runs)
    token = _ACTIVE_LOOPS.set(loops)
    try:
        return call_with_run(pipeline, parent_call, args, kwargs, loops)
    finally:
        _ACTIVE_LOOPS.reset(token)
        for technique in enabled:
            records = loops.records(technique.name) if technique.record is not None else []
            if records:
                setattr(pipeline, technique.record, type(records[0]).concatenate(records))
