"""Unconditional pixel- and latent-space diffusion (``UNet2DModel``) with DeepCache.

These pipelines have no step-end callback, so every U-Net call is one loop iteration.
"""

from __future__ import annotations

from diffusers import DDIMPipeline, DDPMPipeline, LDMPipeline

from ..runtime import DeepCacheConfig
from .mixin import DeepCachePipelineMixin

# The paper's CIFAR-10 setting: interval 5 at paper branch 3 = helper branch 2, uniform.
_PAPER_DDPM_SETTING = DeepCacheConfig(cache_interval=5, cache_branch_id=2)


class DeepCacheDDPMPipeline(DeepCachePipelineMixin, DDPMPipeline):
    """``DDPMPipeline`` with DeepCache's arguments; works with its DDPM or a DDIM scheduler.

    ``deepcache_defaults``: the paper's CIFAR-10 setting, interval 5, paper branch 3 (helper branch 2), uniform.

    Example:
        ```py
        >>> from diffusers import DDIMScheduler
        >>> from deepcache import DeepCacheDDPMPipeline
        >>> pipe = DeepCacheDDPMPipeline.from_pretrained("google/ddpm-cifar10-32")
        >>> pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        >>> images = pipe(batch_size=16, num_inference_steps=100, cache_interval=5, cache_branch_id=2).images
        ```
    """

    deepcache_defaults = _PAPER_DDPM_SETTING


class DeepCacheDDIMPipeline(DeepCachePipelineMixin, DDIMPipeline):
    """``DDIMPipeline`` (``eta`` and a DDIM scheduler) with DeepCache's arguments.

    ``deepcache_defaults``: the paper's CIFAR-10 setting, interval 5, helper branch 2, uniform.
    """

    deepcache_defaults = _PAPER_DDPM_SETTING


class DeepCacheLDMPipeline(DeepCachePipelineMixin, LDMPipeline):
    """Unconditional latent diffusion (``LDMPipeline``, e.g. CelebA-HQ) with DeepCache's arguments.

    The reference ships no setting for it; ``deepcache_defaults`` is interval 3, branch 1, uniform.
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=3, cache_branch_id=1)
