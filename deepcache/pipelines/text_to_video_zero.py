"""Text2Video-Zero (SD and SDXL) with DeepCache: three denoising loops per call, each cached on its own."""

from __future__ import annotations

from diffusers import TextToVideoZeroPipeline, TextToVideoZeroSDXLPipeline

from ..runtime import DeepCacheConfig, SeveralLoopsMixin
from .mixin import DeepCachePipelineMixin


class DeepCacheTextToVideoZeroPipeline(DeepCachePipelineMixin, SeveralLoopsMixin, TextToVideoZeroPipeline):
    """``TextToVideoZeroPipeline`` with DeepCache's arguments.

    Its three denoising loops (the first frame to ``t1``, on to ``t0``, then every frame from ``t1``
    at a larger batch) each get their own schedule over their own iterations, the first full; no
    feature of one loop is replayed in another. ``pipe.deepcache_record`` lists the three loops'
    iterations one after another. ``deepcache_defaults``: the reference Text2Video-Zero script's
    interval 3, fork ``(0, 0)`` = branch 1, uniform.

    Example:
        ```py
        >>> from deepcache import DeepCacheTextToVideoZeroPipeline
        >>> pipe = DeepCacheTextToVideoZeroPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
        >>> frames = pipe("a panda playing guitar on times square", cache_interval=3, cache_branch_id=1).images
        ```
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=1)


class DeepCacheTextToVideoZeroSDXLPipeline(DeepCachePipelineMixin, SeveralLoopsMixin, TextToVideoZeroSDXLPipeline):
    """``TextToVideoZeroSDXLPipeline`` with DeepCache's arguments, each loop cached on its own.

    ``deepcache_defaults``: as the SD variant's, interval 3, branch 1, uniform.
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=1)
