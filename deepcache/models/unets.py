"""Cache-aware U-Nets: the diffusers classes, with DeepCache's and Block Caching's arguments on ``forward``."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from diffusers import (
    I2VGenXLUNet,
    UNet2DConditionModel,
    UNet2DModel,
    UNet3DConditionModel,
    UNetMotionModel,
    UNetSpatioTemporalConditionModel,
)
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from diffusers.models.unets.unet_3d_condition import UNet3DConditionOutput
from diffusers.models.unets.unet_motion_model import UNetMotionOutput
from diffusers.models.unets.unet_spatio_temporal_condition import (
    UNetSpatioTemporalConditionOutput,
)
from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel

from .branches import DeepCacheUNetMixin
from .layout import BranchLayout
from .outputs import with_extra_outputs
from .views import VIEWS_ATTRIBUTE

DeepCacheUNet2DConditionOutput = with_extra_outputs(UNet2DConditionOutput, __name__)
DeepCacheUNetSpatioTemporalConditionOutput = with_extra_outputs(UNetSpatioTemporalConditionOutput, __name__)
DeepCacheUNet2DOutput = with_extra_outputs(UNet2DOutput, __name__)
DeepCacheUNetMotionOutput = with_extra_outputs(UNetMotionOutput, __name__)
DeepCacheUNet3DConditionOutput = with_extra_outputs(UNet3DConditionOutput, __name__)


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


class DeepCacheUNetMotionModel(DeepCacheUNetMixin, UNetMotionModel):
    """``UNetMotionModel`` (AnimateDiff, AnimateDiff-SDXL, PIA) with DeepCache's and Block Caching's arguments.

    Its motion modules run layer by layer inside the blocks, so a cached step skips the deep ones
    with the deep blocks and runs the shallow ones.
    """

    _deepcache_parent = UNetMotionModel
    _deepcache_output = DeepCacheUNetMotionOutput


class DeepCacheUNet3DConditionModel(DeepCacheUNetMixin, UNet3DConditionModel):
    """``UNet3DConditionModel`` (ModelScope text-to-video, Zeroscope) with DeepCache's and Block Caching's arguments."""

    _deepcache_parent = UNet3DConditionModel
    _deepcache_output = DeepCacheUNet3DConditionOutput


class DeepCacheI2VGenXLUNet(DeepCacheUNetMixin, I2VGenXLUNet):
    """``I2VGenXLUNet`` (I2VGen-XL) with DeepCache's and Block Caching's arguments."""

    _deepcache_parent = I2VGenXLUNet
    _deepcache_output = DeepCacheUNet3DConditionOutput


class DeepCacheAudioLDM2UNet2DConditionModel(DeepCacheUNetMixin, AudioLDM2UNet2DConditionModel):
    """AudioLDM2's U-Net (two cross-attentions per layer) with DeepCache's and Block Caching's arguments."""

    _deepcache_parent = AudioLDM2UNet2DConditionModel
    _deepcache_output = DeepCacheUNet2DConditionOutput


CACHE_AWARE_UNETS = (
    DeepCacheUNet2DConditionModel,
    DeepCacheUNetSpatioTemporalConditionModel,
    DeepCacheUNet2DModel,
    DeepCacheUNetMotionModel,
    DeepCacheUNet3DConditionModel,
    DeepCacheI2VGenXLUNet,
    DeepCacheAudioLDM2UNet2DConditionModel,
)


@functools.cache
def _subclass_of(base: type[DeepCacheUNetMixin], unet_class: type) -> type[DeepCacheUNetMixin]:
    """The cache-aware class of ``unet_class``, a subclass of ``base``'s diffusers U-Net: its own forward runs."""
    return type(
        f"DeepCache{unet_class.__name__}",
        (DeepCacheUNetMixin, unet_class),
        {
            "_deepcache_parent": unet_class,
            "_deepcache_output": base._deepcache_output,
            "__module__": __name__,
            "__doc__": f"``{unet_class.__name__}`` with DeepCache's and Block Caching's arguments.",
        },
    )


def cache_aware_class(unet: torch.nn.Module) -> type[DeepCacheUNetMixin]:
    """The cache-aware class for ``unet``: a supported diffusers U-Net, or a subclass of one whose blocks DeepCache
    can cut (checked here, so that a U-Net that does not fit is refused before any denoising)."""
    for cls in CACHE_AWARE_UNETS:
        if type(unet) in (cls, cls._deepcache_parent):
            return cls
    if isinstance(unet, DeepCacheUNetMixin):
        return type(unet)
    for cls in CACHE_AWARE_UNETS:
        if isinstance(unet, cls._deepcache_parent):
            BranchLayout.of(unet)
            return _subclass_of(cls, type(unet))
    supported = ", ".join(cls._deepcache_parent.__name__ for cls in CACHE_AWARE_UNETS)
    raise TypeError(
        f"DeepCache supports U-Nets of the classes {supported} (and their subclasses), but this pipeline's `unet` is "
        f"a {type(unet).__name__}."
    )


@contextlib.contextmanager
def cache_aware(unet: torch.nn.Module, views: dict | None = None) -> Iterator[DeepCacheUNetMixin]:
    """``unet`` made cache-aware in place for the block; a diffusers U-Net gets its own class back after it.

    ``views``, a dict the caller keeps (a pipeline keeps one), holds the U-Net's step views across
    blocks, so that later calls reuse them (and ``torch.compile`` its graphs) while the U-Net itself
    is left as it was found between calls.
    """
    cls = cache_aware_class(unet)
    converted = not isinstance(unet, cls)
    cls.from_unet(unet)
    if converted and views is not None:
        unet.__dict__[VIEWS_ATTRIBUTE] = views
    try:
        yield unet
    finally:
        if converted:
            cls.restore(unet)
