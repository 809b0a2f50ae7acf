"""Cache-aware U-Nets: the diffusers classes, with DeepCache's and Block Caching's arguments on ``forward``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from diffusers import (
    UNet2DConditionModel,
    UNet2DModel,
    UNetSpatioTemporalConditionModel,
)
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from diffusers.models.unets.unet_spatio_temporal_condition import (
    UNetSpatioTemporalConditionOutput,
)

from .branches import DeepCacheUNetMixin
from .outputs import with_extra_outputs

DeepCacheUNet2DConditionOutput = with_extra_outputs(UNet2DConditionOutput, __name__)
DeepCacheUNetSpatioTemporalConditionOutput = with_extra_outputs(UNetSpatioTemporalConditionOutput, __name__)
DeepCacheUNet2DOutput = with_extra_outputs(UNet2DOutput, __name__)


class DeepCacheUNet2DConditionModel(DeepCacheUNetMixin, UNet2DConditionModel):
    """``UNet2DConditionModel`` (Stable Diffusion 1.x/2.x, SDXL) with DeepCache's and Block Caching's arguments."""

    _deepcache_parent = UNet2DConditionModel
    _deepcache_output = DeepCacheUNet2DConditionOutput


class DeepCacheUNetSpatioTemporalConditionModel(DeepCacheUNetMixin, UNetSpatioTemporalConditionModel):
    """``UNetSpatioTemporalConditionModel`` (Stable Video Diffusion) with DeepCache's and Block Caching's arguments."""

    _deepcache_parent = UNetSpatioTemporalConditionModel
    _deepcache_output = DeepCacheUNetSpatioTemporalConditionOutput


class DeepCacheUNet2DModel(DeepCacheUNetMixin, UNet2DModel):
    """``UNet2DModel`` (DDPM, unconditional latent diffusion) with DeepCache's and Block Caching's arguments."""

    _deepcache_parent = UNet2DModel
    _deepcache_output = DeepCacheUNet2DOutput


CACHE_AWARE_UNETS = (DeepCacheUNet2DConditionModel, DeepCacheUNetSpatioTemporalConditionModel, DeepCacheUNet2DModel)


def cache_aware_class(unet: torch.nn.Module) -> type[DeepCacheUNetMixin]:
    """The cache-aware class for ``unet``, a diffusers U-Net of one of the three supported classes."""
    for cls in CACHE_AWARE_UNETS:
        if type(unet) in (cls, cls._deepcache_parent):
            return cls
    supported = ", ".join(cls._deepcache_parent.__name__ for cls in CACHE_AWARE_UNETS)
    raise TypeError(
        f"DeepCache supports U-Nets of the classes {supported}, but this pipeline's `unet` is a {type(unet).__name__}."
    )


@contextlib.contextmanager
def cache_aware(unet: torch.nn.Module) -> Iterator[DeepCacheUNetMixin]:
    """``unet`` made cache-aware in place for the block; a diffusers U-Net gets its own class back after it."""
    cls = cache_aware_class(unet)
    converted = not isinstance(unet, cls)
    cls.from_unet(unet)
    try:
        yield unet
    finally:
        if converted:
            cls.restore(unet)
