"""T2I-Adapter pipelines (SD and SDXL) with DeepCache.

The adapter adds one residual at the end of each down block. A cached step applies those of the
blocks whose end it runs; the deeper ones are already inside the stored feature, as the
ControlNet's deep residuals are.
"""

from __future__ import annotations

from diffusers import StableDiffusionAdapterPipeline, StableDiffusionXLAdapterPipeline

from ..runtime import DeepCacheConfig
from .mixin import DeepCachePipelineMixin


class DeepCacheStableDiffusionAdapterPipeline(DeepCachePipelineMixin, StableDiffusionAdapterPipeline):
    """``StableDiffusionAdapterPipeline`` with DeepCache's arguments; interval 3, branch 0 by default.

    Example:
        ```py
        >>> from deepcache import DeepCacheStableDiffusionAdapterPipeline
        >>> from diffusers import T2IAdapter
        >>> adapter = T2IAdapter.from_pretrained("TencentARC/t2iadapter_canny_sd15v2")
        >>> pipe = DeepCacheStableDiffusionAdapterPipeline.from_pretrained(
        ...     "stable-diffusion-v1-5/stable-diffusion-v1-5", adapter=adapter)
        >>> image = pipe("a bird", image=canny_edges, cache_interval=3, cache_branch_id=0).images[0]
        ```
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=0)


class DeepCacheStableDiffusionXLAdapterPipeline(DeepCachePipelineMixin, StableDiffusionXLAdapterPipeline):
    """``StableDiffusionXLAdapterPipeline`` with DeepCache's arguments; interval 3, branch 1 (as SDXL's)."""

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=1)
