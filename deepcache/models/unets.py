"""Cache-aware U-Nets: the diffusers classes, with DeepCache's branch arguments on ``forward``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel, UNet2DModel, UNetSpatioTemporalConditionModel
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput

from ..branches import DeepCacheUNetMixin


@dataclass
class DeepCacheUNet2DConditionOutput(UNet2DConditionOutput):
    """``UNet2DConditionOutput`` plus the deep ``features`` to pass to the next cached step."""

    features: torch.Tensor | None = None


@dataclass
class DeepCacheUNetSpatioTemporalConditionOutput(UNetSpatioTemporalConditionOutput):
    """``UNetSpatioTemporalConditionOutput`` plus the deep ``features`` for the next cached step."""

    features: torch.Tensor | None = None


@dataclass
class DeepCacheUNet2DOutput(UNet2DOutput):
    """``UNet2DOutput`` plus the deep ``features`` to pass to the next cached step."""

    features: torch.Tensor | None = None


class DeepCacheUNet2DConditionModel(DeepCacheUNetMixin, UNet2DConditionModel):
    """``UNet2DConditionModel`` (Stable Diffusion 1.x/2.x, SDXL) with DeepCache's branch arguments."""

    _deepcache_parent = UNet2DConditionModel
    _deepcache_output = DeepCacheUNet2DConditionOutput


class DeepCacheUNetSpatioTemporalConditionModel(DeepCacheUNetMixin, UNetSpatioTemporalConditionModel):
    """``UNetSpatioTemporalConditionModel`` (Stable Video Diffusion) with DeepCache's branch arguments."""

    _deepcache_parent = UNetSpatioTemporalConditionModel
    _deepcache_output = DeepCacheUNetSpatioTemporalConditionOutput


class DeepCacheUNet2DModel(DeepCacheUNetMixin, UNet2DModel):
    """``UNet2DModel`` (DDPM, unconditional latent diffusion) with DeepCache's branch arguments."""

    _deepcache_parent = UNet2DModel
    _deepcache_output = DeepCacheUNet2DOutput
