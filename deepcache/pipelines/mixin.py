"""What every DeepCache pipeline adds to its diffusers parent: caching arguments, nothing else.

Each pipeline class gets a ``__call__`` generated from its diffusers parent's: the parent's
parameters in the parent's order, with its defaults and annotations, then the caching parameters,
keyword-only. ``inspect.signature``, ``help()``, IDEs and diffusers' own machinery (which reads
``__call__``'s parameters to decide what to pass) see the whole signature. The body only takes the
caching arguments out and hands everything else, positional or keyword, to the parent unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import textwrap
import typing

from ..models import CACHE_AWARE_UNETS, DeepCacheUNetMixin, cache_aware_class
from ..runtime import (
    TECHNIQUES,
    DeepCacheConfig,
    caching_configs,
    call_with_caching,
    diffusers_class,
    unwrap,
)


def technique_parameters(technique) -> list[inspect.Parameter]:
    """A technique's config fields as keyword-only parameters, with their defaults and types."""
    types = typing.get_type_hints(technique.config)
    kind = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter(f.name, kind, default=f.default, annotation=types[f.name])
        for f in dataclasses.fields(technique.config)
    ]


def config_args(config: type) -> str:
    """The ``Args:`` section of a config's docstring, dedented."""
    return textwrap.dedent(inspect.cleandoc(config.__doc__).split("Args:\n", 1)[1])


CACHING_PARAMETERS = tuple(p for technique in TECHNIQUES for p in technique_parameters(technique))


def _caching_doc() -> str:
    """Every technique config's ``Args:``, to append to the parent's docstring."""
    args = textwrap.indent("\n".join(config_args(technique.config) for technique in TECHNIQUES), " " * 4)
    return textwrap.indent(
        f"DeepCache arguments (keyword-only; with none of them the call is the parent's exactly):\n{args}", " " * 8
    )


def caching_signature(parent_call) -> inspect.Signature:
    """``parent_call``'s signature with the caching parameters inserted before any ``**kwargs``."""
    signature = inspect.signature(parent_call)
    clash = [p.name for p in CACHING_PARAMETERS if p.name in signature.parameters]
    if clash:
        raise TypeError(
            f"The diffusers parent's `__call__` already has parameters named {clash}; DeepCache cannot add its own."
        )
    parameters = list(signature.parameters.values())
    var_keyword = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    others = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return signature.replace(parameters=[*others, *CACHING_PARAMETERS, *var_keyword])


def _caching_call(cls: type):
    """A ``__call__`` for ``cls`` that takes the caching arguments and passes the rest to the parent."""
    parent_call = diffusers_class(cls).__call__

    def __call__(self, *args, **kwargs):
        configs = caching_configs({p.name: kwargs.pop(p.name) for p in CACHING_PARAMETERS if p.name in kwargs})
        return call_with_caching(self, super(cls, self).__call__, args, kwargs, configs, self.deepcache_defaults)

    __call__.__signature__ = caching_signature(parent_call)
    __call__.__doc__ = f"{parent_call.__doc__ or ''}\n{_caching_doc()}\n"
    __call__.__qualname__ = f"{cls.__qualname__}.__call__"
    __call__.__module__ = cls.__module__
    return __call__


class DeepCachePipelineMixin:
    """Adds DeepCache's arguments to a diffusers pipeline's ``__call__``; everything else is the parent's.

    A subclass lists the mixin first, then its diffusers parent, and sets ``deepcache_defaults``: the
    reference's recommended setting for that model. Its branch is used when a call turns caching on
    without naming one; scripts pass the whole setting with ``**pipe.deepcache_defaults.as_kwargs()``.
    Such a subclass gets a ``__call__`` with the parent's whole signature plus the caching arguments.
    """

    deepcache_defaults: DeepCacheConfig

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if DeepCachePipelineMixin in cls.__bases__ and "__call__" not in vars(cls):
            cls.__call__ = _caching_call(cls)

    def register_modules(self, **kwargs):
        """The parent's, after checking that DeepCache can cut the U-Net (a clear ``TypeError`` now, not at the
        first call). The U-Net stays the diffusers class it is: each call makes it cache-aware for its length,
        so the pipeline's components pass to any diffusers pipeline (``from_pipe``)."""
        unet = unwrap(kwargs.get("unet"))
        if unet is not None:
            cache_aware_class(unet)
        super().register_modules(**kwargs)
        if isinstance(unet, DeepCacheUNetMixin):  # one given cache-aware: saved as the plain class
            parent = unet._deepcache_parent
            self.register_to_config(unet=(parent.__module__.split(".")[0], parent.__name__))

    @classmethod
    def _get_signature_types(cls) -> dict:
        """The parent's component types, plus the cache-aware U-Nets, so ``from_pipe`` passes one given on."""
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
        return diffusers_class(cls).__name__
