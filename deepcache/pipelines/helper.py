"""Plug-and-play DeepCache for an existing diffusers pipeline, with the original package's API.

``DeepCacheSDHelper(pipe)`` works on any pipeline whose ``unet`` is a U-Net DeepCache makes cache-aware
(:data:`deepcache.models.CACHE_AWARE_UNETS`, or a subclass with a parent's block layout): SD, SDXL, SVD,
AnimateDiff, Kandinsky 2.2, DeepFloyd IF, Marigold, AudioLDM, ... (the battery's table in the docs).
A pipeline it cannot serve is refused by ``enable()``, with the reason.

``enable()`` swaps two classes on the instances it is given, never on shared classes: the U-Net
becomes cache-aware and the pipeline a per-class subclass whose ``__call__`` runs each call through
:func:`deepcache.pipelines.call_with_caching`. ``disable()`` swaps both back, so the pipeline
computes exactly what it computed before.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import textwrap

from ..models import cache_aware
from ..runtime import (
    TECHNIQUES,
    DeepCacheConfig,
    SeveralLoopsMixin,
    branch_layout,
    caching_configs,
    call_with_caching,
    diffusers_class,
    enabled_helper,
    unwrap,
)
from ..runtime.base import HELPER_ATTRIBUTE
from .mixin import DeepCachePipelineMixin, config_args, technique_parameters

SKIP_MODES = ("uniform", "non-uniform")
# The original helper's own parameters (positional too), then every technique's config field but these:
# the helper numbers branches by `cache_branch_id` alone and says `skip_mode` for `uniform`.
_ORIGINAL = (
    inspect.Parameter("cache_interval", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1, annotation=int),
    inspect.Parameter("cache_branch_id", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=0, annotation=int),
    inspect.Parameter("skip_mode", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="uniform", annotation=str),
)
_NOT_HELPER = ("cache_interval", "cache_branch_id", "uniform", "cache_layer_id", "cache_block_id")
HELPER_PARAMETERS = (
    *_ORIGINAL,
    *(p for technique in TECHNIQUES for p in technique_parameters(technique) if p.name not in _NOT_HELPER),
)


def helper_params(caching: dict) -> dict:
    """``set_params`` keyword arguments for caching arguments by name (the inverse of what it does)."""
    params = dict(caching)
    if params.pop("uniform", True) is False:
        params["skip_mode"] = "non-uniform"
    if "cache_layer_id" in params or "cache_block_id" in params:
        raise ValueError(
            "The helper takes `cache_branch_id`; this setting names its branch by (cache_layer_id, cache_block_id)."
        )
    return params


def _arg_blocks(args: str) -> list[str]:
    """The entries of a docstring's ``Args:`` section (each with its indented continuation lines)."""
    blocks: list[str] = []
    for line in args.splitlines():
        if line.startswith(" ") and blocks:
            blocks[-1] += "\n" + line
        elif line.strip():
            blocks.append(line)
    return blocks


def _set_params_doc() -> str:
    """``set_params``'s docstring: the original helper's three arguments, then each technique config's own."""
    original = [
        "cache_interval (`int`, defaults to `1`): one full step per ``N`` loop iterations; ``1`` is off.",
        "cache_branch_id (`int`, defaults to `0`): the cached skip branch (0 = conv_in's output).",
        'skip_mode (`str`, defaults to `"uniform"`): ``"uniform"`` or ``"non-uniform"`` (paper Eq. 7).',
    ]
    others = [
        block
        for technique in TECHNIQUES
        for block in _arg_blocks(config_args(technique.config))
        if block.split(" ", 1)[0] not in _NOT_HELPER
    ]
    return "Sets how the pipeline caches; takes effect at its next call.\n\nArgs:\n" + textwrap.indent(
        "\n".join([*original, *others]), "    "
    )


class DeepCacheSDHelper:
    """Turns DeepCache on and off on an existing pipeline (arXiv 2312.00858).

    Drop-in for the original ``DeepCache.DeepCacheSDHelper``: same methods, arguments and branch
    numbering, without its state leaks across calls, its per-module caches or its step counting
    by timestep value. Also a context manager (``with helper: ...`` enables, then disables).

    Args:
        pipe (`DiffusionPipeline`, *optional*): the pipeline to accelerate; may instead be given to
            :meth:`enable`.

    Example:
        ```py
        >>> from deepcache import DeepCacheSDHelper
        >>> helper = DeepCacheSDHelper(pipe=pipe)
        >>> helper.set_params(cache_interval=3, cache_branch_id=0)
        >>> helper.enable()
        >>> image = pipe("a photo of an astronaut").images[0]
        >>> helper.disable()
        ```
    """

    def __init__(self, pipe=None):
        self.pipe = pipe
        self.configs = caching_configs({"cache_branch_id": 0})  # each technique's, by name
        self._enabled: contextlib.ExitStack | None = None  # what disable() undoes

    @property
    def config(self) -> DeepCacheConfig:
        """The DeepCache part of the setting."""
        return self.configs["deepcache"]

    def set_params(self, *args, **kwargs) -> None:
        """Sets how the pipeline caches; takes effect at its next call. (Signature and arguments below.)"""
        params = inspect.signature(self.set_params).bind(*args, **kwargs)
        params.apply_defaults()
        settings = dict(params.arguments)
        skip_mode = settings.pop("skip_mode")
        if skip_mode not in SKIP_MODES:
            raise ValueError(f"`skip_mode` must be one of {SKIP_MODES}, but got {skip_mode!r}.")
        if settings["cache_branch_id"] is None:
            raise TypeError("`cache_branch_id` must be an integer, but got None.")
        configs = caching_configs({**settings, "uniform": skip_mode == "uniform"})
        if self.pipe is not None:
            branch_layout(self.pipe).resolve(settings["cache_branch_id"])  # a bad branch fails here, not mid-generation
        self.configs = configs

    set_params.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *HELPER_PARAMETERS]
    )
    set_params.__doc__ = _set_params_doc()

    @property
    def enabled(self) -> bool:
        return self._enabled is not None

    def enable(self, pipe=None) -> None:
        """Makes ``pipe`` (or the helper's pipeline) cache at every call until :meth:`disable`."""
        self.disable()  # enabling twice is the same as once; enabling another pipeline releases the first
        self.pipe = pipe if pipe is not None else self.pipe
        if self.pipe is None:
            raise ValueError(
                "DeepCacheSDHelper has no pipeline: pass it as `DeepCacheSDHelper(pipe)` or `enable(pipe)`."
            )
        if enabled_helper(self.pipe) is not None:
            raise ValueError("This pipeline already has another enabled DeepCacheSDHelper; call its `disable()` first.")
        pipe = self.pipe
        branch_layout(pipe).resolve(self.config.cache_branch_id)
        with contextlib.ExitStack() as enabled:
            enabled.enter_context(cache_aware(unwrap(pipe.unet)))
            original_class = type(pipe)
            pipe.__class__ = _with_helper_call(original_class)
            pipe.__dict__[HELPER_ATTRIBUTE] = self

            @enabled.callback
            def undo():
                pipe.__class__ = original_class
                del pipe.__dict__[HELPER_ATTRIBUTE]

            self._enabled = enabled.pop_all()

    def disable(self) -> None:
        """Restores the pipeline exactly as it was before :meth:`enable`; does nothing if not enabled."""
        enabled, self._enabled = self._enabled, None
        if enabled is not None:
            enabled.close()

    def __enter__(self) -> DeepCacheSDHelper:
        self.enable()
        return self

    def __exit__(self, *exc_info) -> None:
        self.disable()


@functools.cache
def _with_helper_call(pipeline_class: type) -> type:
    """A subclass of ``pipeline_class`` whose ``__call__`` applies the instance's helper.

    It keeps the parent's name, so ``save_pretrained`` while enabled writes the usual checkpoint.
    On a DeepCache pipeline it calls the diffusers parent: the helper's setting replaces the call's.
    """
    called = diffusers_class(pipeline_class) if issubclass(pipeline_class, DeepCachePipelineMixin) else pipeline_class
    parent_call = called.__call__

    @functools.wraps(parent_call)  # the signature, name and docstring of the call it makes
    def __call__(self, *args, **kwargs):
        helper = enabled_helper(self)
        return call_with_caching(self, parent_call.__get__(self), args, kwargs, helper.configs, helper.config)

    bases = (pipeline_class,)
    if hasattr(pipeline_class, "backward_loop") and not issubclass(pipeline_class, SeveralLoopsMixin):
        bases = (SeveralLoopsMixin, pipeline_class)  # Text2Video-Zero: each loop cached on its own
    subclass = type(pipeline_class.__name__, bases, {"__call__": __call__, "__module__": pipeline_class.__module__})
    subclass.__qualname__ = pipeline_class.__qualname__
    return subclass
