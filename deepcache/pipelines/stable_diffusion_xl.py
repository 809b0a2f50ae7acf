"""Stable Diffusion XL with DeepCache: text-to-image, image-to-image (and refiner) and inpainting."""

from __future__ import annotations

from diffusers import (
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

from ..runtime import DeepCacheConfig
from .mixin import DeepCachePipelineMixin


class DeepCacheStableDiffusionXLPipeline(DeepCachePipelineMixin, StableDiffusionXLPipeline):
    """``StableDiffusionXLPipeline`` with DeepCache's arguments.

    With ``denoising_end`` (base of a base + refiner pair) the schedule covers the iterations that
    run. ``deepcache_defaults``: the reference script's interval 3, fork ``(0, 0)`` = branch 1, uniform.

    Example:
        ```py
        >>> from deepcache import DeepCacheStableDiffusionXLPipeline
        >>> pipe = DeepCacheStableDiffusionXLPipeline.from_pretrained("stabilityai/stable-diffusion-xl-base-1.0")
        >>> image = pipe("a photo of an astronaut", cache_interval=3, cache_branch_id=1).images[0]
        ```
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=1)


class DeepCacheStableDiffusionXLImg2ImgPipeline(DeepCachePipelineMixin, StableDiffusionXLImg2ImgPipeline):
    """``StableDiffusionXLImg2ImgPipeline`` with DeepCache's arguments; also the SDXL refiner.

    With ``strength < 1`` or ``denoising_start`` the schedule covers only the iterations that run,
    and the first is full. ``deepcache_defaults``: interval 3, fork ``(0, 0)`` = branch 1, uniform.
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=1)


class DeepCacheStableDiffusionXLInpaintPipeline(DeepCachePipelineMixin, StableDiffusionXLInpaintPipeline):
    """``StableDiffusionXLInpaintPipeline`` with DeepCache's arguments.

    With ``strength < 1`` the schedule covers only the iterations that run, and the first is full.
    ``deepcache_defaults``: the reference helper demo's interval 3, branch 0, uniform.
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=0)
