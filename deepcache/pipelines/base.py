"""What every DeepCache pipeline adds to its diffusers parent: caching arguments, nothing else.

A pipeline call with ``cache_interval > 1`` creates a :class:`DeepCacheRun` and hooks it onto the
U-Net for that call only. The parent's ``__call__`` runs unchanged; on each U-Net call the run adds
the branch and, on cached steps, the stored features. The hooks are removed and the run dropped
when the call ends, also when it raises, so no call can see another's features.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ..config import DeepCacheConfig
from ..models import CACHE_AWARE_UNETS, cache_aware_class


class DeepCacheRun:
    """The state of one pipeline call: loop iteration, schedule and cached features.

    Iterations are counted at the pipeline's step-end callback when it has one (so several U-Net
    calls in one iteration, such as separate cond/uncond passes, each keep their own features);
    otherwise each U-Net call is one iteration.
    """

    def __init__(self, pipeline, config: DeepCacheConfig, branch: int, counts_by_callback: bool):
        self.pipeline = pipeline
        self.config = config
        self.branch = branch
        self.counts_by_callback = counts_by_callback
        self.full_steps: frozenset[int] | None = None
        self.iteration = 0
        self.call = 0  # U-Net call within the iteration
        self.features: dict[int, torch.Tensor] = {}

    def num_iterations(self) -> int:
        steps = getattr(self.pipeline, "_num_timesteps", None)
        return steps if steps else len(self.pipeline.scheduler.timesteps)

    def before_unet(self, unet, args, kwargs):
        if self.full_steps is None:  # the loop is starting: its length is known now
            self.full_steps = frozenset(self.config.full_steps(self.num_iterations()))
        cached = self.iteration not in self.full_steps and self.call in self.features
        features = self.features.pop(self.call) if cached else None
        return args, {**kwargs, "cache_branch_id": self.branch, "replicate_prev_features": features}

    def after_unet(self, unet, args, kwargs, output):
        if isinstance(output, tuple):
            self.features[self.call] = output[1]
            output = output[:1]
        else:
            self.features[self.call] = output.features
            output = dataclasses.replace(output, features=None)
        self.call += 1
        if not self.counts_by_callback:
            self.end_iteration()
        return output  # what the parent U-Net would have returned

    def end_iteration(self) -> None:
        self.iteration += 1
        self.call = 0


def call_with_deepcache(pipeline, parent_call, args: tuple, kwargs: dict, config: DeepCacheConfig, default_branch: int):
    """Runs ``parent_call(*args, **kwargs)`` with DeepCache hooked onto ``pipeline.unet`` for this call only.

    ``default_branch`` is used when ``config`` names no branch. With caching off, the parent call
    runs untouched.
    """
    if not config.enabled:
        return parent_call(*args, **kwargs)
    unet = _unwrap(pipeline.unet)
    cache_aware_class(unet).from_unet(unet)
    branch = unet.deepcache_layout.resolve(config.cache_branch_id, config.cache_layer_id, config.cache_block_id)
    branch = default_branch if branch is None else branch
    parameters = inspect.signature(parent_call).parameters
    counts_by_callback = "callback_on_step_end" in parameters
    run = DeepCacheRun(pipeline, config, branch, counts_by_callback)
    if counts_by_callback:
        kwargs = _chain_step_end(kwargs, run, "callback_on_step_end_tensor_inputs" in parameters)
    with contextlib.ExitStack() as cleanup:  # hooks go on whatever object the parent calls
        cleanup.callback(pipeline.unet.register_forward_pre_hook(run.before_unet, with_kwargs=True).remove)
        cleanup.callback(pipeline.unet.register_forward_hook(run.after_unet, with_kwargs=True).remove)
        return parent_call(*args, **kwargs)


class DeepCachePipelineMixin:
    """Adds DeepCache's arguments to a diffusers pipeline's ``__call__``; everything else is the parent's.

    A subclass lists the mixin first, then its diffusers parent, and sets ``deepcache_defaults``: the
    reference's recommended setting for that model. Its branch is used when a call turns caching on
    without naming one; scripts pass the whole setting with ``**pipe.deepcache_defaults.as_kwargs()``.
    """

    deepcache_defaults: DeepCacheConfig

    def __call__(
        self,
        *args,
        cache_interval: int = 1,
        cache_layer_id: int | None = None,
        cache_block_id: int | None = None,
        cache_branch_id: int | None = None,
        uniform: bool = True,
        pow: float | None = None,
        center: int | None = None,
        **kwargs,
    ):
        """The diffusers parent's ``__call__``, plus the arguments of :class:`deepcache.DeepCacheConfig`.

        With ``cache_interval=1`` (the default) it returns exactly what the parent returns.
        """
        config = DeepCacheConfig(cache_interval, cache_branch_id, cache_layer_id, cache_block_id, uniform, pow, center)
        return call_with_deepcache(self, super().__call__, args, kwargs, config, self.deepcache_defaults.cache_branch_id)

    def register_modules(self, **kwargs):
        unet = kwargs.get("unet")
        if unet is not None:
            cache_class = cache_aware_class(_unwrap(unet))
            cache_class.from_unet(_unwrap(unet))
        super().register_modules(**kwargs)
        if unet is not None:  # saved pipelines name the plain diffusers class
            parent = cache_class._deepcache_parent
            self.register_to_config(unet=(parent.__module__.split(".")[0], parent.__name__))

    @classmethod
    def _get_signature_types(cls) -> dict:
        """The parent's component types, plus the cache-aware U-Nets, so ``from_pipe`` passes them on."""
        types = super()._get_signature_types()
        if "unet" in types:
            types["unet"] = (*types["unet"], *(c for c in CACHE_AWARE_UNETS if c._deepcache_parent in types["unet"]))
        return types

    def to_json_string(self) -> str:
        """Saved pipelines are plain diffusers checkpoints: DeepCache changes no weight."""
        config = json.loads(super().to_json_string())
        config["_class_name"] = self._deepcache_parent_name()
        return json.dumps(config, indent=2, sort_keys=True) + "\n"

    @classmethod
    def _deepcache_parent_name(cls) -> str:
        return next(c for c in cls.__mro__ if c.__module__.split(".")[0] == "diffusers").__name__


def _chain_step_end(kwargs: dict, run: DeepCacheRun, takes_tensor_inputs: bool) -> dict:
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


def _unwrap(module):
    """The module inside a ``torch.compile`` wrapper."""
    return getattr(module, "_orig_mod", module)
