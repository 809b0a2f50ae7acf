"""DeepCache's user-facing parameters, validated once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .deepcache import _check_positive_int, _check_pow, nonuniform_full_steps, uniform_full_steps


@dataclass(frozen=True)
class DeepCacheConfig:
    """How a pipeline call caches (arXiv 2312.00858).

    Args:
        cache_interval (`int`, defaults to `1`): ``N``; one full step per ``N`` loop iterations on
            average. ``1`` turns caching off.
        cache_branch_id (`int`, *optional*): the cached branch in the plug-and-play helper's numbering
            (skip connection index; 0 is conv_in's output).
        cache_layer_id (`int`, *optional*): the branch in the forked pipelines' numbering, with
            ``cache_block_id``: the down block; ``(0, 0)`` is branch 1. Give either form, or neither
            for the pipeline's default.
        cache_block_id (`int`, *optional*): the layer within that down block (its layer count means
            after the downsampler).
        uniform (`bool`, defaults to `True`): full steps every ``N`` iterations; ``False`` uses the
            non-uniform schedule of the paper's Eq. 7 with ``pow`` and ``center``.
        pow (`float`, *optional*): non-uniform schedule's power (> 1), 1.4 if not given.
        center (`int`, *optional*): non-uniform schedule's centre iteration, ``round(0.3 * T)`` if not given.
    """

    cache_interval: int = 1
    cache_branch_id: int | None = None
    cache_layer_id: int | None = None
    cache_block_id: int | None = None
    uniform: bool = True
    pow: float | None = None
    center: int | None = None

    def __post_init__(self):
        _check_positive_int("cache_interval", self.cache_interval)
        if not isinstance(self.uniform, bool):
            raise TypeError(f"`uniform` must be True or False, but got {self.uniform!r}.")
        if self.pow is not None:
            _check_pow(self.pow)
        if self.center is not None and (isinstance(self.center, bool) or not isinstance(self.center, int) or self.center < 0):
            raise ValueError(f"`center` must be a non-negative integer step index, but got {self.center!r}.")

    def as_kwargs(self) -> dict:
        """The setting as keyword arguments of a DeepCache pipeline call."""
        return dataclasses.asdict(self)

    @property
    def enabled(self) -> bool:
        return self.cache_interval > 1

    def full_steps(self, num_steps: int) -> tuple[int, ...]:
        """The full loop iterations of a run of ``num_steps`` iterations."""
        if self.uniform:
            return uniform_full_steps(num_steps, self.cache_interval)
        return nonuniform_full_steps(num_steps, self.cache_interval, self.center, self.pow)
