"""Stable Diffusion 1.x / 2.x text-to-image with DeepCache."""

from __future__ import annotations

from diffusers import StableDiffusionPipeline

from ..config import DeepCacheConfig
from ..models import DeepCacheUNet2DConditionModel
from .base import DeepCachePipelineMixin


class DeepCacheStableDiffusionPipeline(DeepCachePipelineMixin, StableDiffusionPipeline):
    """``StableDiffusionPipeline`` whose ``__call__`` also takes DeepCache's arguments.

    Without them (``cache_interval=1``) it returns exactly what ``StableDiffusionPipeline`` returns.
    With ``cache_interval > 1`` and no branch given it caches at the reference's default for SD 1.5/2.1,
    fork ``(cache_layer_id=0, cache_block_id=0)`` = branch 1.

    Example:
        ```py
        >>> from deepcache import DeepCacheStableDiffusionPipeline
        >>> pipe = DeepCacheStableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
        >>> image = pipe("a photo of an astronaut", cache_interval=5, cache_layer_id=0, cache_block_id=0,
        ...              uniform=False, pow=1.4, center=15).images[0]
        ```
    """

    _deepcache_unet_class = DeepCacheUNet2DConditionModel
    _deepcache_default_branch = 1

    def __call__(
        self,
        *args,
        cache_interval: int = 1,
        cache_layer_id: int | None = None,
        cache_block_id: int | None = None,
        cache_branch_id: int | None = None,
        uniform: bool = True,
        pow: float | None = None,
        center: int | None = None,
        **kwargs,
    ):
        """``StableDiffusionPipeline.__call__``, plus the arguments of :class:`deepcache.DeepCacheConfig`."""
        config = DeepCacheConfig(cache_interval, cache_branch_id, cache_layer_id, cache_block_id, uniform, pow, center)
        return self._deepcache_call(super().__call__, args, kwargs, config)
