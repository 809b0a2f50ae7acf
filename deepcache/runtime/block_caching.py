"""Block Caching (Wimbauer et al., arXiv 2312.03209): its setting, and the run that reuses unit residuals.

A schedule (:class:`deepcache.BlockCacheSchedule`, from :func:`deepcache.profile_blocks`) says at
which iterations each unit is recomputed; at the others its last residual is reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models import block_units, take_extra
from ..schedules import BlockCacheSchedule
from .base import LoopRun, Technique, unwrap


@dataclass(frozen=True)
class BlockCacheConfig:
    """Whether and how a pipeline call reuses Block Caching unit residuals.

    Args:
        block_cache (`BlockCacheSchedule`, *optional*): Block Caching (arXiv 2312.03209), e.g.
            ``deepcache.profile_blocks(pipe, prompts).schedule(delta)``; alone, or with DeepCache
            (``cache_interval`` > 1), when it applies to the units each step runs.
    """

    block_cache: BlockCacheSchedule | None = None

    def __post_init__(self):
        if self.block_cache is not None and not isinstance(self.block_cache, BlockCacheSchedule):
            raise TypeError(
                "`block_cache` must be a BlockCacheSchedule (e.g. `profile.schedule(delta)`), but got "
                f"{type(self.block_cache).__name__}."
            )

    @property
    def enabled(self) -> bool:
        return self.block_cache is not None


class BlockCacheRun(LoopRun):
    """One Block Caching call: the schedule and the residuals that later iterations reuse."""

    def __init__(self, pipeline, schedule: BlockCacheSchedule):
        super().__init__(pipeline)
        self.schedule = schedule
        self.checked = False
        self.residuals: dict[int, dict[str, torch.Tensor]] = {}  # per U-Net call of the iteration

    def before_unet(self, unet, args, kwargs):
        if not self.checked:  # the loop is starting: its length is known now
            self.schedule.check_fits(self.num_iterations(), block_units(unwrap(unet), "all"))
            self.checked = True
        stored = self.residuals.setdefault(self.call, {})
        reused = {unit: stored[unit] for unit in self.schedule.reused_units(self.iteration) if unit in stored}
        recorded = self.schedule.recorded_units(self.iteration)
        return args, {**kwargs, "block_cache_units": recorded, "block_cache_residuals": reused}

    def after_unet(self, unet, args, kwargs, output):
        recorded, output = take_extra(output, "block_residuals")
        self.residuals[self.call].update(recorded)
        self.next_call()
        return output


def make_run(pipeline, config: BlockCacheConfig, defaults) -> BlockCacheRun:
    return BlockCacheRun(pipeline, config.block_cache)


TECHNIQUE = Technique("block_caching", BlockCacheConfig, make_run)
