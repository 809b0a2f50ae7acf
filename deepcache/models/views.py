"""Views: shallow copies of a U-Net and its blocks that share every module and weight.

Both caching techniques run the diffusers parent's own ``forward`` on a view whose child lists are
cut (DeepCache) or hold wrappers (Block Caching). Views are cached on the U-Net and rebuilt when
the U-Net changes, so the model itself carries no per-call state.
"""

from __future__ import annotations

import copy
import types

import torch
from torch import nn

VIEWS_ATTRIBUTE = "_deepcache_views"  # where a cache-aware U-Net keeps its views, outside ``_modules``


def shallow_view(module: nn.Module, **children) -> nn.Module:
    """A shallow copy of ``module`` sharing everything except the given child modules.

    An instance-level ``forward`` (a patch bound to the original module) is dropped, so the view
    runs its class's forward over its own, cut, child lists.
    """
    view = copy.copy(module)
    view.__dict__.pop("forward", None)
    view._modules = {**module._modules, **children}
    return view


def _fingerprint(unet: nn.Module) -> tuple:
    """Identity of everything a view copies: changes when a module or attribute is replaced.

    Ids suffice: a cached view's copies keep every old attribute value alive, so no replaced
    value's id can be reused while its view exists.
    """
    blocks = [
        *unet.down_blocks,
        *([unet.mid_block] if unet.mid_block is not None else []),
        *getattr(unet, "up_blocks", ()),
    ]
    layer_lists = [
        getattr(b, kind) for b in blocks for kind in ("resnets", "attentions") if getattr(b, kind, None) is not None
    ]
    sources = [unet, *blocks, *layer_lists]
    return tuple(id(v) for m in sources for d in (m.__dict__, m._modules) for v in d.values())


def replaced_view(root: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    """A view of ``root`` with the module at each dotted path replaced; views along the paths only."""
    grouped: dict[str, dict[str, nn.Module]] = {}
    for path, module in replacements.items():
        head, _, rest = path.partition(".")
        grouped.setdefault(head, {})[rest] = module
    children = {}
    for head, below in grouped.items():
        children[head] = below[""] if "" in below else replaced_view(root._modules[head], below)
    return shallow_view(root, **children)


@torch.compiler.disable
def cached_view(unet: nn.Module, key, build):
    """``build()``'s views of ``unet`` for ``key``, built once and rebuilt only when the model changes.

    Reusing the same view objects lets ``torch.compile`` keep one graph per step kind; the
    fingerprint keeps them in step with ``train()``/``eval()``, FreeU, LoRA or swapped modules.
    The cache lives outside ``_modules``, so it adds nothing to ``state_dict`` or ``parameters()``.
    """
    cache = unet.__dict__.setdefault(VIEWS_ATTRIBUTE, {})
    fingerprint = _fingerprint(unet)
    if cache.get("fingerprint") != fingerprint:
        cache.clear()
        cache.update(fingerprint=fingerprint, views={})
    if key not in cache["views"]:
        cache["views"][key] = build()
    return cache["views"][key]


def layer_lists(block: nn.Module) -> dict[str, int]:
    """``block``'s layer lists, each with its entries per layer (one layer: one resnet and what runs with it).

    Every layer list but the down/upsamplers runs layer by layer with ``resnets``: attentions,
    AnimateDiff's motion modules, the temporal convolutions and attentions of 3D blocks. A list ``k``
    times as long as ``resnets`` (AudioLDM2's two cross-attentions per layer) holds ``k`` per layer.
    """
    count = len(block.resnets)
    lists = {}
    for name, modules in block._modules.items():
        if isinstance(modules, nn.ModuleList) and name not in ("downsamplers", "upsamplers") and len(modules):
            per_layer, rest = divmod(len(modules), count) if count else (0, len(modules))
            if rest or not per_layer:
                raise ValueError(
                    f"DeepCache cannot cut {type(block).__name__}: its `{name}` has {len(modules)} entries for "
                    f"{count} layers (resnets)."
                )
            lists[name] = per_layer
    return lists


def layer_view(block: nn.Module, layers: slice, **children) -> nn.Module:
    """A view of ``block`` that runs only ``layers`` of its layers (every layer list cut alike)."""
    start, stop, _ = layers.indices(len(block.resnets))
    cut = {
        name: nn.ModuleList(block._modules[name][start * per_layer : stop * per_layer])
        for name, per_layer in layer_lists(block).items()
    }
    return shallow_view(block, **cut, **children)


def swap_class(module: nn.Module, old: type, new: type) -> None:
    """Changes ``module``'s class and rebinds instance attributes bound to the old ``forward``.

    Wrappers such as accelerate's offloading hook keep the original forward as ``_old_forward``;
    rebinding it keeps them calling the class's current forward.
    """
    module.__class__ = new
    for name, value in list(vars(module).items()):
        if getattr(value, "__func__", None) is old.forward and getattr(value, "__self__", None) is module:
            setattr(module, name, types.MethodType(new.forward, module))
