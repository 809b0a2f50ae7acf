"""FLOPs of full and cached U-Net steps, and the speedup they allow.

Counting runs on the ``meta`` device: no memory, no time, and attention is included (on CPU
tensors ``FlopCounterMode`` misses it, because the CPU attention kernel has no FLOP formula).
"""

from __future__ import annotations

import collections
import contextlib
import json

import torch
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from ..models import cache_aware_class
from ..models.blocks import shortcut_splits


def count_flops(function, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        function(*args, **kwargs)
    return counter.get_total_flops()


def module_flops(module: torch.nn.Module, function, *args, **kwargs) -> int:
    """FLOPs inside ``module``'s forward calls while ``function(*args, **kwargs)`` runs on real tensors.

    For what no fixed schedule describes (a pipeline call whose steps differ, as with gating or
    composed caches): e.g. ``module_flops(pipe.unet, pipe, prompt, num_inference_steps=50)``.
    Attention runs its math kernel here, the one whose FLOPs the counter sees.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    counter, total = FlopCounterMode(display=False), 0

    def enter(*_):
        counter.__enter__()

    def leave(*_):
        nonlocal total
        counter.__exit__(None, None, None)
        total += counter.get_total_flops()

    with contextlib.ExitStack() as cleanup, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        cleanup.callback(module.register_forward_pre_hook(enter).remove)
        cleanup.callback(module.register_forward_hook(leave).remove)
        function(*args, **kwargs)
    return total


def step_flops(unet: torch.nn.Module, args: tuple, kwargs: dict, branch: int) -> tuple[int, int]:
    """FLOPs of one full and one cached step of a cache-aware ``unet`` at ``branch``."""
    with torch.no_grad():
        full = count_flops(unet, *args, **kwargs, cache_branch_id=branch, return_dict=False)
        _, features = unet(*args, **kwargs, cache_branch_id=branch, return_dict=False)
        cached = count_flops(unet, *args, **kwargs, cache_branch_id=branch, replicate_prev_features=features)
    return full, cached


BRANCH_FLOPS_KEPT = 32  # counts kept, by architecture and input shapes (counting takes seconds); the oldest go first
_BRANCH_FLOPS: collections.OrderedDict[str, dict[int, tuple[int, int]]] = collections.OrderedDict()


def branch_step_flops(unet: torch.nn.Module, args: tuple, kwargs: dict, branches) -> dict[int, tuple[int, int]]:
    """FLOPs of one full and one cached call of ``unet`` (a diffusers U-Net or its cache-aware class) at each branch,
    on these inputs.

    Counted on a float32 ``meta`` copy (built from ``unet.config``), so the inputs may be on any
    device and of any dtype: only their shapes matter; the counts are kept for the next call with
    the same architecture and shapes.
    """
    shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else repr(v) for v in tree_flatten((args, kwargs))[0]]
    key = json.dumps(
        [type(unet).__name__, dict(unet.config), shapes, sorted(kwargs), list(branches)], sort_keys=True, default=str
    )
    if key not in _BRANCH_FLOPS:
        _BRANCH_FLOPS[key] = _count_branch_flops(unet, args, kwargs, branches)
        while len(_BRANCH_FLOPS) > BRANCH_FLOPS_KEPT:
            _BRANCH_FLOPS.popitem(last=False)
    _BRANCH_FLOPS.move_to_end(key)
    return dict(_BRANCH_FLOPS[key])


def _count_branch_flops(unet: torch.nn.Module, args: tuple, kwargs: dict, branches) -> dict[int, tuple[int, int]]:
    with torch.device("meta"):
        meta_unet = cache_aware_class(unet).from_config(unet.config).to("meta")
    args, kwargs = tree_map(_float32_meta, (args, kwargs))
    kwargs = {k: v for k, v in kwargs.items() if k not in ("return_dict", "cache_branch_id", "replicate_prev_features")}
    counts = {}
    with torch.no_grad():
        for branch in branches:  # a full call costs the same at every branch: counted once
            if not counts:
                full = count_flops(meta_unet, *args, **kwargs, cache_branch_id=branch, return_dict=False)
            _, features = meta_unet(*args, **kwargs, cache_branch_id=branch, return_dict=False)
            counts[branch] = (
                full,
                count_flops(meta_unet, *args, **kwargs, cache_branch_id=branch, replicate_prev_features=features),
            )
    return counts


def unit_flops(unet: torch.nn.Module, args: tuple, kwargs: dict, units: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    """FLOPs of one forward of ``unet`` on these inputs, and what reusing each Block Caching unit saves.

    A reused resnet still runs its 1x1 ``conv_shortcut``, so that is not saved.

    Counted on a float32 ``meta`` copy of the architecture (built from ``unet.config``), so the
    inputs may be on any device and of any dtype: only their shapes matter.
    """
    parent = getattr(type(unet), "_deepcache_parent", type(unet))
    with torch.device("meta"):
        meta_unet = parent.from_config(unet.config).to("meta")  # legacy torch.Tensor(...) buffers ignore the context
    args, kwargs = tree_map(_float32_meta, (args, kwargs))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta_unet(*args, **kwargs)
    by_module = {name.split(".", 1)[-1]: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    saved = {}
    for unit in units:
        kept = by_module.get(f"{unit}.conv_shortcut", 0) if shortcut_splits(meta_unet.get_submodule(unit)) else 0
        saved[unit] = by_module.get(unit, 0) - kept
    return counter.get_total_flops(), saved


def _float32_meta(value):
    if not isinstance(value, torch.Tensor):
        return value
    return value.to("meta", torch.float32) if value.is_floating_point() else value.to("meta")


def ideal_speedup(full: int, cached: int, num_steps: int, num_full_steps: int) -> float:
    """Speedup if time followed FLOPs: all-full steps over the schedule's mix of full and cached."""
    return num_steps * full / (num_full_steps * full + (num_steps - num_full_steps) * cached)
