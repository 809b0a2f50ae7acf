"""Stable Video Diffusion (image-to-video) with DeepCache."""

from __future__ import annotations

from diffusers import StableVideoDiffusionPipeline

from ..runtime import DeepCacheConfig
from .mixin import DeepCachePipelineMixin


class DeepCacheStableVideoDiffusionPipeline(DeepCachePipelineMixin, StableVideoDiffusionPipeline):
    """``StableVideoDiffusionPipeline`` with DeepCache's arguments.

    ``deepcache_defaults``: the reference SVD-XT script's interval 3, branch 1, uniform (25 steps).

    Example:
        ```py
        >>> from deepcache import DeepCacheStableVideoDiffusionPipeline
        >>> model = "stabilityai/stable-video-diffusion-img2vid-xt"
        >>> pipe = DeepCacheStableVideoDiffusionPipeline.from_pretrained(model)
        >>> frames = pipe(image, decode_chunk_size=8, cache_interval=3, cache_branch_id=1).frames[0]
        ```
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=1)
