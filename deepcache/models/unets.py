"""Cache-aware U-Nets: the diffusers classes, with DeepCache's and Block Caching's arguments on ``forward``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel, UNet2DModel, UNetSpatioTemporalConditionModel
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput

from .branches import DeepCacheUNetMixin


@dataclass
class DeepCacheUNet2DConditionOutput(UNet2DConditionOutput):
    """``UNet2DConditionOutput`` plus DeepCache's ``features``, Block Caching's residuals, cross-attention outputs."""

    features: torch.Tensor | None = None
    block_residuals: dict[str, torch.Tensor] | None = None
    cross_attention_outputs: dict[str, torch.Tensor] | None = None


@dataclass
class DeepCacheUNetSpatioTemporalConditionOutput(UNetSpatioTemporalConditionOutput):
    """``UNetSpatioTemporalConditionOutput`` plus DeepCache's ``features``, Block Caching's residuals, cross-attention outputs."""

    features: torch.Tensor | None = None
    block_residuals: dict[str, torch.Tensor] | None = None
    cross_attention_outputs: dict[str, torch.Tensor] | None = None


@dataclass
class DeepCacheUNet2DOutput(UNet2DOutput):
    """``UNet2DOutput`` plus DeepCache's ``features``, Block Caching's residuals, cross-attention outputs."""

    features: torch.Tensor | None = None
    block_residuals: dict[str, torch.Tensor] | None = None
    cross_attention_outputs: dict[str, torch.Tensor] | None = None


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
    raise TypeError(f"DeepCache supports U-Nets of the classes {supported}, but this pipeline's `unet` is a {type(unet).__name__}.")
