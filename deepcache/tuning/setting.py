"""One way to run a pipeline faster, as data: a step count, how the call caches, and a Block Caching schedule."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..schedules import BlockCacheSchedule, DeepCacheConfig
from ..schedules.deepcache import _check_positive_int

_OFF = DeepCacheConfig()


@dataclass(frozen=True)
class TunedSetting:
    """A setting the tuner measured; ``pipe(prompt, **setting.kwargs)`` runs it.

    Args:
        num_inference_steps (`int`): the steps of the call (fewer than the reference's when the
            setting runs fewer steps).
        caching (`DeepCacheConfig`, defaults to no caching): DeepCache, adaptive caching and gating.
        block_cache (`BlockCacheSchedule`, *optional*): Block Caching.
    """

    num_inference_steps: int
    caching: DeepCacheConfig = field(default_factory=DeepCacheConfig)
    block_cache: BlockCacheSchedule | None = None

    def __post_init__(self):
        _check_positive_int("num_inference_steps", self.num_inference_steps)
        if not isinstance(self.caching, DeepCacheConfig):
            raise TypeError(f"`caching` must be a DeepCacheConfig, but got {type(self.caching).__name__}.")
        if self.block_cache is not None and not isinstance(self.block_cache, BlockCacheSchedule):
            raise TypeError(f"`block_cache` must be a BlockCacheSchedule or None, but got {type(self.block_cache).__name__}.")

    @property
    def caching_kwargs(self) -> dict:
        """The caching arguments that differ from their defaults (and ``block_cache``)."""
        changed = {k: v for k, v in self.caching.as_kwargs().items() if v != getattr(_OFF, k)}
        return {**changed, **({"block_cache": self.block_cache} if self.block_cache is not None else {})}

    @property
    def kwargs(self) -> dict:
        """Keyword arguments of a DeepCache pipeline call: ``pipe(prompt, **setting.kwargs)``."""
        return {"num_inference_steps": self.num_inference_steps, **self.caching_kwargs}

    @property
    def helper_params(self) -> dict:
        """Keyword arguments of ``DeepCacheSDHelper.set_params`` (the call still takes ``num_inference_steps``)."""
        params = dict(self.caching_kwargs)
        if params.pop("uniform", True) is False:
            params["skip_mode"] = "non-uniform"
        if "cache_layer_id" in params or "cache_block_id" in params:
            raise ValueError("The helper takes `cache_branch_id`; this setting names its branch by (cache_layer_id, cache_block_id).")
        return params

    def describe(self) -> str:
        """A short human description, e.g. ``DeepCache N=3 b1, 50 steps``."""
        c, parts = self.caching, []
        if c.adaptive:
            parts.append(f"adaptive threshold {c.cache_threshold:.3g} (runs <= {c.cache_interval}) b{c.cache_branch_id}")
        elif c.cache_full_steps is not None:
            parts.append(f"calibrated {len(c.cache_full_steps)} full steps b{c.cache_branch_id}")
        elif c.enabled:
            shape = "uniform" if c.uniform else f"non-uniform pow {c.pow or 1.4:g}" + (f" center {c.center}" if c.center is not None else "")
            parts.append(f"DeepCache N={c.cache_interval} b{c.cache_branch_id} {shape}")
        if self.block_cache is not None:
            delta = "" if self.block_cache.delta is None else f" delta {self.block_cache.delta:.3g}"
            parts.append(f"Block Caching{delta} ({len(self.block_cache.units)} units)")
        if c.gate_step is not None:
            parts.append(f"T-GATE gate {c.gate_step}")
        return " + ".join(parts or ["no caching"]) + f", {self.num_inference_steps} steps"

    def to_dict(self) -> dict:
        caching = {k: list(v) if isinstance(v, tuple) else v for k, v in self.caching_kwargs.items() if k != "block_cache"}
        return {"num_inference_steps": self.num_inference_steps, "caching": caching,
                "block_cache": None if self.block_cache is None else self.block_cache.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping) -> "TunedSetting":
        caching = dict(data.get("caching", {}))
        if caching.get("cache_full_steps") is not None:
            caching["cache_full_steps"] = tuple(caching["cache_full_steps"])
        block = data.get("block_cache")
        return cls(data["num_inference_steps"], DeepCacheConfig(**caching), None if block is None else BlockCacheSchedule.from_dict(block))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TunedSetting":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes) -> "TunedSetting":
        return dataclasses.replace(self, **changes)
