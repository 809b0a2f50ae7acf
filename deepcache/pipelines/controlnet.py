"""ControlNet pipelines (SD and SDXL; text-to-image, image-to-image, inpainting; ControlNet-Union) with DeepCache.

On a cached step the ControlNet runs only the layers whose residuals the cached U-Net reads (see
:mod:`deepcache.models.controlnets`), for one ControlNet, a list of them, or a Union model.
"""

from __future__ import annotations

from diffusers import (
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLControlNetUnionImg2ImgPipeline,
    StableDiffusionXLControlNetUnionInpaintPipeline,
    StableDiffusionXLControlNetUnionPipeline,
)

from ..runtime import DeepCacheConfig
from .mixin import DeepCachePipelineMixin

_SD = DeepCacheConfig(cache_interval=3, cache_branch_id=0)  # the reference helper demo's setting
_SDXL = DeepCacheConfig(cache_interval=3, cache_branch_id=1)  # the reference SDXL script's setting


class DeepCacheStableDiffusionControlNetPipeline(DeepCachePipelineMixin, StableDiffusionControlNetPipeline):
    """``StableDiffusionControlNetPipeline`` with DeepCache's arguments; a cached step runs only the
    ControlNet's shallow layers. ``deepcache_defaults``: interval 3, branch 0, uniform.

    Example:
        ```py
        >>> from deepcache import DeepCacheStableDiffusionControlNetPipeline
        >>> from diffusers import ControlNetModel
        >>> controlnet = ControlNetModel.from_pretrained("lllyasviel/sd-controlnet-canny")
        >>> pipe = DeepCacheStableDiffusionControlNetPipeline.from_pretrained(
        ...     "stable-diffusion-v1-5/stable-diffusion-v1-5", controlnet=controlnet)
        >>> image = pipe("a bird", image=canny_edges, cache_interval=3, cache_branch_id=0).images[0]
        ```
    """

    deepcache_defaults = _SD


class DeepCacheStableDiffusionControlNetImg2ImgPipeline(
    DeepCachePipelineMixin, StableDiffusionControlNetImg2ImgPipeline
):
    """``StableDiffusionControlNetImg2ImgPipeline`` with DeepCache's arguments; interval 3, branch 0."""

    deepcache_defaults = _SD


class DeepCacheStableDiffusionControlNetInpaintPipeline(
    DeepCachePipelineMixin, StableDiffusionControlNetInpaintPipeline
):
    """``StableDiffusionControlNetInpaintPipeline`` with DeepCache's arguments; interval 3, branch 0."""

    deepcache_defaults = _SD


class DeepCacheStableDiffusionXLControlNetPipeline(DeepCachePipelineMixin, StableDiffusionXLControlNetPipeline):
    """``StableDiffusionXLControlNetPipeline`` with DeepCache's arguments; interval 3, branch 1 (as SDXL's)."""

    deepcache_defaults = _SDXL


class DeepCacheStableDiffusionXLControlNetImg2ImgPipeline(
    DeepCachePipelineMixin, StableDiffusionXLControlNetImg2ImgPipeline
):
    """``StableDiffusionXLControlNetImg2ImgPipeline`` with DeepCache's arguments; interval 3, branch 1."""

    deepcache_defaults = _SDXL


class DeepCacheStableDiffusionXLControlNetInpaintPipeline(
    DeepCachePipelineMixin, StableDiffusionXLControlNetInpaintPipeline
):
    """``StableDiffusionXLControlNetInpaintPipeline`` with DeepCache's arguments; interval 3, branch 1."""

    deepcache_defaults = _SDXL


class DeepCacheStableDiffusionXLControlNetUnionPipeline(
    DeepCachePipelineMixin, StableDiffusionXLControlNetUnionPipeline
):
    """``StableDiffusionXLControlNetUnionPipeline`` with DeepCache's arguments; interval 3, branch 1."""

    deepcache_defaults = _SDXL


class DeepCacheStableDiffusionXLControlNetUnionImg2ImgPipeline(
    DeepCachePipelineMixin, StableDiffusionXLControlNetUnionImg2ImgPipeline
):
    """``StableDiffusionXLControlNetUnionImg2ImgPipeline`` with DeepCache's arguments; interval 3, branch 1."""

    deepcache_defaults = _SDXL


class DeepCacheStableDiffusionXLControlNetUnionInpaintPipeline(
    DeepCachePipelineMixin, StableDiffusionXLControlNetUnionInpaintPipeline
):
    """``StableDiffusionXLControlNetUnionInpaintPipeline`` with DeepCache's arguments; interval 3, branch 1."""

    deepcache_defaults = _SDXL
