"""Stable Diffusion 1.x / 2.x with DeepCache: text-to-image, image-to-image and inpainting."""

from __future__ import annotations

from diffusers import (
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
)

from ..runtime import DeepCacheConfig
from .mixin import DeepCachePipelineMixin


class DeepCacheStableDiffusionPipeline(DeepCachePipelineMixin, StableDiffusionPipeline):
    """``StableDiffusionPipeline`` (SD 1.5, 2.1) whose ``__call__`` also takes DeepCache's arguments.

    Without them (``cache_interval=1``) it returns exactly what ``StableDiffusionPipeline`` returns.
    ``deepcache_defaults`` is the reference script's setting: interval 5, fork ``(0, 0)`` = branch 1,
    non-uniform schedule with ``pow=1.4`` and centre ``0.3 T`` (15 of 50 steps).

    Example:
        ```py
        >>> from deepcache import DeepCacheStableDiffusionPipeline
        >>> pipe = DeepCacheStableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
        >>> image = pipe("a photo of an astronaut", cache_interval=5, cache_layer_id=0, cache_block_id=0,
        ...              uniform=False, pow=1.4, center=15).images[0]
        ```
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=5, cache_branch_id=1, uniform=False, pow=1.4)


class DeepCacheStableDiffusionImg2ImgPipeline(DeepCachePipelineMixin, StableDiffusionImg2ImgPipeline):
    """``StableDiffusionImg2ImgPipeline`` with DeepCache's arguments.

    With ``strength < 1`` the schedule covers only the iterations that run, and the first is full.
    ``deepcache_defaults``: the reference helper demo's interval 3, branch 0, uniform.
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=0)


class DeepCacheStableDiffusionInpaintPipeline(DeepCachePipelineMixin, StableDiffusionInpaintPipeline):
    """``StableDiffusionInpaintPipeline`` (4- or 9-channel U-Nets) with DeepCache's arguments.

    With ``strength < 1`` the schedule covers only the iterations that run, and the first is full.
    ``deepcache_defaults``: the reference helper demo's interval 3, branch 0, uniform.
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=0)
