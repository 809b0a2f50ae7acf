"""Video U-Nets with temporal layers inside their blocks, with DeepCache: I2VGen-XL and ModelScope text-to-video.

``I2VGenXLUNet`` and ``UNet3DConditionModel`` run a temporal convolution (and attention) with every
layer; a cached step skips the deep ones with the deep blocks.
"""

from __future__ import annotations

from diffusers import I2VGenXLPipeline, TextToVideoSDPipeline, VideoToVideoSDPipeline

from ..runtime import DeepCacheConfig
from .mixin import DeepCachePipelineMixin

_DEFAULTS = DeepCacheConfig(cache_interval=3, cache_branch_id=0)


class DeepCacheI2VGenXLPipeline(DeepCachePipelineMixin, I2VGenXLPipeline):
    """``I2VGenXLPipeline`` with DeepCache's arguments; interval 3, branch 0 by default."""

    deepcache_defaults = _DEFAULTS


class DeepCacheTextToVideoSDPipeline(DeepCachePipelineMixin, TextToVideoSDPipeline):
    """``TextToVideoSDPipeline`` (ModelScope, Zeroscope) with DeepCache's arguments; interval 3, branch 0."""

    deepcache_defaults = _DEFAULTS


class DeepCacheVideoToVideoSDPipeline(DeepCachePipelineMixin, VideoToVideoSDPipeline):
    """``VideoToVideoSDPipeline`` with DeepCache's arguments; interval 3, branch 0 by default."""

    deepcache_defaults = _DEFAULTS
