"""AnimateDiff (SD 1.5 and SDXL motion modules; text-, video- and ControlNet-conditioned) and PIA with DeepCache.

Their U-Net is a ``UNetMotionModel``: every layer of every block runs a motion module after its
resnet (and attention), so a cached step skips the deep motion modules with the deep blocks and
runs the shallow ones. Features are per frame (the U-Net folds frames into the batch). FreeInit's
re-initialised loops are each cached on their own.
"""

from __future__ import annotations

from diffusers import (
    AnimateDiffControlNetPipeline,
    AnimateDiffPipeline,
    AnimateDiffSDXLPipeline,
    AnimateDiffSparseControlNetPipeline,
    AnimateDiffVideoToVideoControlNetPipeline,
    AnimateDiffVideoToVideoPipeline,
    PIAPipeline,
)

from ..runtime import DeepCacheConfig
from .mixin import DeepCachePipelineMixin

_SD = DeepCacheConfig(cache_interval=3, cache_branch_id=0)  # as SD 1.5's helper demo: interval 3, branch 0
_SDXL = DeepCacheConfig(cache_interval=3, cache_branch_id=1)  # as SDXL's reference script: interval 3, branch 1


class DeepCacheAnimateDiffPipeline(DeepCachePipelineMixin, AnimateDiffPipeline):
    """``AnimateDiffPipeline`` with DeepCache's arguments; interval 3, branch 0 by default.

    Example:
        ```py
        >>> from deepcache import DeepCacheAnimateDiffPipeline
        >>> from diffusers import MotionAdapter
        >>> adapter = MotionAdapter.from_pretrained("guoyww/animatediff-motion-adapter-v1-5-2")
        >>> pipe = DeepCacheAnimateDiffPipeline.from_pretrained(
        ...     "stable-diffusion-v1-5/stable-diffusion-v1-5", motion_adapter=adapter)
        >>> frames = pipe("a rocket lifting off", num_frames=16, cache_interval=3, cache_branch_id=0).frames[0]
        ```
    """

    deepcache_defaults = _SD


class DeepCacheAnimateDiffSDXLPipeline(DeepCachePipelineMixin, AnimateDiffSDXLPipeline):
    """``AnimateDiffSDXLPipeline`` with DeepCache's arguments; interval 3, branch 1 (as SDXL's)."""

    deepcache_defaults = _SDXL


class DeepCacheAnimateDiffVideoToVideoPipeline(DeepCachePipelineMixin, AnimateDiffVideoToVideoPipeline):
    """``AnimateDiffVideoToVideoPipeline`` with DeepCache's arguments; the schedule covers the iterations that run
    (``strength``). Interval 3, branch 0 by default."""

    deepcache_defaults = _SD


class DeepCacheAnimateDiffControlNetPipeline(DeepCachePipelineMixin, AnimateDiffControlNetPipeline):
    """``AnimateDiffControlNetPipeline`` with DeepCache's arguments; a cached step runs only the ControlNet's shallow
    layers. Interval 3, branch 0 by default."""

    deepcache_defaults = _SD


class DeepCacheAnimateDiffVideoToVideoControlNetPipeline(
    DeepCachePipelineMixin, AnimateDiffVideoToVideoControlNetPipeline
):
    """``AnimateDiffVideoToVideoControlNetPipeline`` with DeepCache's arguments; interval 3, branch 0 by default."""

    deepcache_defaults = _SD


class DeepCacheAnimateDiffSparseControlNetPipeline(DeepCachePipelineMixin, AnimateDiffSparseControlNetPipeline):
    """``AnimateDiffSparseControlNetPipeline`` with DeepCache's arguments (its SparseCtrl ControlNet runs whole on
    every step); interval 3, branch 0 by default."""

    deepcache_defaults = _SD


class DeepCachePIAPipeline(DeepCachePipelineMixin, PIAPipeline):
    """``PIAPipeline`` (image-to-video with PIA's motion modules) with DeepCache's arguments; interval 3, branch 0."""

    deepcache_defaults = _SD
