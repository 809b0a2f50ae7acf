"""ControlNets that run, on a cached step, only the layers the cached U-Net reads.

A cached DeepCache step at branch ``b`` adds ControlNet residuals only to the skips it produces
(``0..b``); the mid block's residual and every deeper one are already inside the stored feature.
So on that step the ControlNet runs only ``conv_in``, the conditioning embedding, the down layers
producing skips ``1..b`` and their zero convolutions, on a view of itself cut as the U-Net's cached
view is cut. The residuals it does not compute come back as zeros of shape ``(batch, 1, 1, 1)``:
every list keeps its length, so guess mode's per-residual scales, multi-ControlNet sums and the
pipelines' guidance concatenation work unchanged, and the U-Net never reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from diffusers import ControlNetModel, ControlNetUnionModel, MultiControlNetModel
from diffusers.models.controlnets.multicontrolnet_union import MultiControlNetUnionModel
from torch import nn

from .layout import BranchLayout
from .views import cached_view, layer_view, shallow_view, swap_class


class _PassOn(nn.Module):
    """The last down block of a cut ControlNet: the sample goes on, and stands in for ``count`` skips not computed."""

    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return hidden_states, (hidden_states,) * self.count


class _Skip(nn.Module):
    """Stands in for the mid block: nothing deep runs."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


class _Zero(nn.Module):
    """Stands in for a zero convolution whose residual the cached U-Net step does not read."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states.new_zeros(hidden_states.shape[0], 1, 1, 1)


def down_layout(controlnet: nn.Module) -> BranchLayout:
    """The skips a ControlNet's down path produces, numbered as the U-Net's branches (no up path)."""
    return BranchLayout(
        tuple(len(b.resnets) + (1 if getattr(b, "downsamplers", None) else 0) for b in controlnet.down_blocks), ()
    )


def _cut_view(controlnet: nn.Module, branch: int) -> nn.Module:
    layout = down_layout(controlnet)
    whole, layers = layout.down_cut(branch)
    down = list(controlnet.down_blocks[:whole])
    if layers:
        down.append(layer_view(controlnet.down_blocks[whole], slice(0, layers), downsamplers=None))
    deeper = layout.num_branches - 1 - branch
    down.append(_PassOn(deeper))
    zero_convs = [*controlnet.controlnet_down_blocks[: branch + 1], *(_Zero() for _ in range(deeper))]
    return shallow_view(
        controlnet,
        down_blocks=nn.ModuleList(down),
        mid_block=_Skip(),
        controlnet_down_blocks=nn.ModuleList(zero_convs),
        controlnet_mid_block=_Zero(),
    )


class DeepCacheControlNetMixin:
    """Adds ``cache_branch_id`` to a diffusers ControlNet's ``forward``: given, only the layers producing
    skips ``0..cache_branch_id`` run, and the deeper residuals are zeros (see the module)."""

    _deepcache_parent: type

    def forward(self, *args, cache_branch_id: int | None = None, **kwargs):
        if cache_branch_id is None:
            return self._deepcache_parent.forward(self, *args, **kwargs)
        view = cached_view(self, ("controlnet", cache_branch_id), lambda: _cut_view(self, cache_branch_id))
        return self._deepcache_parent.forward(view, *args, **kwargs)


class DeepCacheControlNetModel(DeepCacheControlNetMixin, ControlNetModel):
    """``ControlNetModel`` (SD, SDXL) that can run only a cached step's layers."""

    _deepcache_parent = ControlNetModel


class DeepCacheControlNetUnionModel(DeepCacheControlNetMixin, ControlNetUnionModel):
    """``ControlNetUnionModel`` (SDXL ControlNet-Union) that can run only a cached step's layers."""

    _deepcache_parent = ControlNetUnionModel


CACHE_AWARE_CONTROLNETS = (DeepCacheControlNetModel, DeepCacheControlNetUnionModel)


def cuttable_controlnets(controlnet: nn.Module | None, unet_layout: BranchLayout) -> list[nn.Module]:
    """The ControlNets in a pipeline's ``controlnet`` (one, or a multi-ControlNet's) whose down
    path is the U-Net's, so that a cached step's branch means the same layers in both."""
    nets = (
        list(controlnet.nets)
        if isinstance(controlnet, (MultiControlNetModel, MultiControlNetUnionModel))
        else [controlnet]
    )
    known = {t for cls in CACHE_AWARE_CONTROLNETS for t in (cls, cls._deepcache_parent)}
    return [net for net in nets if type(net) in known and down_layout(net).down_skips == unet_layout.down_skips]


@contextlib.contextmanager
def cache_aware_controlnets(nets: list[nn.Module]) -> Iterator[None]:
    """Makes ``nets`` cache-aware in place for the duration, then gives them back their diffusers class."""
    swapped = [(net, cls) for net in nets for cls in CACHE_AWARE_CONTROLNETS if type(net) is cls._deepcache_parent]
    for net, cls in swapped:
        swap_class(net, cls._deepcache_parent, cls)
    try:
        yield
    finally:
        for net, cls in swapped:
            swap_class(net, cls, cls._deepcache_parent)
