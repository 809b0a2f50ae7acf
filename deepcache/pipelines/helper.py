"""Plug-and-play DeepCache for an existing diffusers pipeline, with the original package's API.

``DeepCacheSDHelper(pipe)`` works on any pipeline whose ``unet`` is a ``UNet2DConditionModel``,
``UNetSpatioTemporalConditionModel`` or ``UNet2DModel`` (SD, SDXL, their img2img/inpaint/ControlNet
variants, SVD, DDPM, ...). ``enable()`` swaps two classes on the instances it is given, never on
shared classes: the U-Net becomes cache-aware and the pipeline a per-class subclass whose
``__call__`` runs each call through :func:`deepcache.pipelines.call_with_caching`. ``disable()``
swaps both back, so the pipeline computes exactly what it computed before.
"""

from __future__ import annotations

import functools

from ..models import DeepCacheUNetMixin, cache_aware_class
from ..schedules import BlockCacheSchedule, DeepCacheConfig
from .mixin import DeepCachePipelineMixin
from .runs import SeveralLoopsMixin, branch_layout, call_with_caching, check_caching, diffusers_class, unwrap

SKIP_MODES = ("uniform", "non-uniform")


class DeepCacheSDHelper:
    """Turns DeepCache on and off on an existing pipeline (arXiv 2312.00858).

    Drop-in for the original ``DeepCache.DeepCacheSDHelper``: same methods, arguments and branch
    numbering, without its state leaks across calls, its per-module caches or its step counting
    by timestep value. Also a context manager (``with helper: ...`` enables, then disables).

    Args:
        pipe (`DiffusionPipeline`, *optional*): the pipeline to accelerate; may instead be given to
            :meth:`enable`.

    Example:
        ```py
        >>> from deepcache import DeepCacheSDHelper
        >>> helper = DeepCacheSDHelper(pipe=pipe)
        >>> helper.set_params(cache_interval=3, cache_branch_id=0)
        >>> helper.enable()
        >>> image = pipe("a photo of an astronaut").images[0]
        >>> helper.disable()
        ```
    """

    def __init__(self, pipe=None):
        self.pipe = pipe
        self.config = DeepCacheConfig(cache_branch_id=0)
        self.block_cache: BlockCacheSchedule | None = None
        self._undo = None  # set while enabled

    def set_params(
        self,
        cache_interval: int = 1,
        cache_branch_id: int = 0,
        skip_mode: str = "uniform",
        pow: float | None = None,
        center: int | None = None,
        block_cache: BlockCacheSchedule | None = None,
        cache_threshold: float | None = None,
        cache_min_interval: int = 1,
        gate_step: int | None = None,
        cache_full_steps: tuple[int, ...] | None = None,
    ) -> None:
        """Sets how the pipeline caches; takes effect at its next call.

        Args:
            cache_interval (`int`, defaults to `1`): one full step per ``N`` loop iterations; ``1`` is off.
            cache_branch_id (`int`, defaults to `0`): the cached skip branch (0 = conv_in's output).
            skip_mode (`str`, defaults to `"uniform"`): ``"uniform"`` or ``"non-uniform"`` (paper Eq. 7).
            pow (`float`, *optional*): non-uniform power (> 1), 1.4 if not given.
            center (`int`, *optional*): non-uniform centre iteration, ``round(0.3 * T)`` if not given.
            block_cache (`BlockCacheSchedule`, *optional*): Block Caching, alone (``cache_interval`` 1)
                or with DeepCache; see :func:`deepcache.profile_blocks`.
            cache_threshold (`float`, *optional*): adaptive caching: full steps chosen at run time from
                the weighted change at the branch, summed (``cache_interval`` is then the longest run between them);
                ``pipe.deepcache_record`` shows them after each call.
            cache_min_interval (`int`, defaults to `1`): adaptive caching's shortest run between full steps.
            gate_step (`int`, *optional*): cross-attention gating (T-GATE): iterations from ``gate_step``
                on reuse the cross-attention outputs of the one before; with guidance they run one half.
            cache_full_steps (`tuple[int, ...]`, *optional*): an explicit schedule (full iterations, 0
                first), e.g. from :func:`deepcache.calibrate_schedule`.
        """
        if skip_mode not in SKIP_MODES:
            raise ValueError(f"`skip_mode` must be one of {SKIP_MODES}, but got {skip_mode!r}.")
        if cache_branch_id is None:
            raise TypeError("`cache_branch_id` must be an integer, but got None.")
        config = DeepCacheConfig(
            cache_interval, cache_branch_id, uniform=skip_mode == "uniform", pow=pow, center=center,
            cache_threshold=cache_threshold, cache_min_interval=cache_min_interval, gate_step=gate_step,
            cache_full_steps=cache_full_steps,
        )
        check_caching(block_cache)
        if self.pipe is not None:
            branch_layout(self.pipe).resolve(cache_branch_id)  # a bad branch fails here, not mid-generation
        self.config, self.block_cache = config, block_cache

    @property
    def enabled(self) -> bool:
        return self._undo is not None

    def enable(self, pipe=None) -> None:
        """Makes ``pipe`` (or the helper's pipeline) cache at every call until :meth:`disable`."""
        self.disable()  # enabling twice is the same as once; enabling another pipeline releases the first
        self.pipe = pipe if pipe is not None else self.pipe
        if self.pipe is None:
            raise ValueError("DeepCacheSDHelper has no pipeline: pass it as `DeepCacheSDHelper(pipe)` or `enable(pipe)`.")
        if "_deepcache_helper" in vars(self.pipe):
            raise ValueError("This pipeline already has another enabled DeepCacheSDHelper; call its `disable()` first.")
        pipe, unet = self.pipe, unwrap(self.pipe.unet)
        branch_layout(pipe).resolve(self.config.cache_branch_id)
        converted = not isinstance(unet, DeepCacheUNetMixin)
        cache_aware_class(unet).from_unet(unet)
        original_class = type(pipe)
        pipe.__class__ = _with_helper_call(original_class)
        pipe.__dict__["_deepcache_helper"] = self

        def undo():
            pipe.__class__ = original_class
            del pipe.__dict__["_deepcache_helper"]
            if converted:
                type(unet).restore(unet)

        self._undo = undo

    def disable(self) -> None:
        """Restores the pipeline exactly as it was before :meth:`enable`; does nothing if not enabled."""
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()

    def __enter__(self) -> "DeepCacheSDHelper":
        self.enable()
        return self

    def __exit__(self, *exc_info) -> None:
        self.disable()


@functools.cache
def _with_helper_call(pipeline_class: type) -> type:
    """A subclass of ``pipeline_class`` whose ``__call__`` applies the instance's helper.

    It keeps the parent's name, so ``save_pretrained`` while enabled writes the usual checkpoint.
    On a DeepCache pipeline it calls the diffusers parent: the helper's setting replaces the call's.
    """
    called = diffusers_class(pipeline_class) if issubclass(pipeline_class, DeepCachePipelineMixin) else pipeline_class
    parent_call = called.__call__

    @functools.wraps(parent_call)  # the signature, name and docstring of the call it makes
    def __call__(self, *args, **kwargs):
        helper = self.__dict__["_deepcache_helper"]
        config = helper.config
        return call_with_caching(self, parent_call.__get__(self), args, kwargs, config, config.cache_branch_id, helper.block_cache)

    bases = (pipeline_class,)
    if hasattr(pipeline_class, "backward_loop") and not issubclass(pipeline_class, SeveralLoopsMixin):
        bases = (SeveralLoopsMixin, pipeline_class)  # Text2Video-Zero: each loop cached on its own
    subclass = type(pipeline_class.__name__, bases, {"__call__": __call__, "__module__": pipeline_class.__module__})
    subclass.__qualname__ = pipeline_class.__qualname__
    return subclass
