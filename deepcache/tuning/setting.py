"""One way to run a pipeline faster, as data: a step count, how the call caches, and the call it was tuned under."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..pipelines.helper import helper_params
from ..runtime import (
    BlockCacheConfig,
    DeepCacheConfig,
    GatingConfig,
    caching_configs,
    caching_kwargs,
)
from ..schedules import BlockCacheSchedule, ForecastCalibration, check_positive_int


class TunedSettingWarning(UserWarning):
    """A tuned setting is applied under other call arguments or another scheduler than it was tuned under."""


@dataclass(frozen=True)
class TunedSetting:
    """A setting the tuner measured; ``pipe(prompt, **setting.kwargs)`` runs it.

    Args:
        num_inference_steps (`int`): the steps of the call (fewer than the reference's when the
            setting runs fewer steps).
        caching (`DeepCacheConfig`, defaults to no caching): DeepCache and adaptive caching.
        block_cache (`BlockCacheSchedule`, *optional*): Block Caching.
        gating (`GatingConfig`, defaults to no gating): cross-attention gating.
        call (`dict`, defaults to none): the call arguments the setting was tuned under besides the
            inputs (``guidance_scale``, sizes, ...): ``kwargs`` passes them, so the call is the one measured.
        scheduler (`str`, *optional*): the class name of the scheduler it was tuned with.
    """

    num_inference_steps: int
    caching: DeepCacheConfig = field(default_factory=DeepCacheConfig)
    block_cache: BlockCacheSchedule | None = None
    gating: GatingConfig = field(default_factory=GatingConfig)
    call: Mapping = field(default_factory=dict)
    scheduler: str | None = None

    def __post_init__(self):
        check_positive_int("num_inference_steps", self.num_inference_steps)
        if not isinstance(self.caching, DeepCacheConfig):
            raise TypeError(f"`caching` must be a DeepCacheConfig, but got {type(self.caching).__name__}.")
        if not isinstance(self.gating, GatingConfig):
            raise TypeError(f"`gating` must be a GatingConfig, but got {type(self.gating).__name__}.")
        BlockCacheConfig(self.block_cache)  # refuses what is not a schedule
        if not isinstance(self.call, Mapping) or "num_inference_steps" in self.call:
            raise TypeError(
                f"`call` must be a dict of call arguments other than `num_inference_steps`, but got {self.call!r}."
            )
        object.__setattr__(self, "call", dict(self.call))

    @property
    def configs(self) -> dict:
        """Each technique's config, by technique name (see ``deepcache.TECHNIQUES``)."""
        return {"deepcache": self.caching, "gating": self.gating, "block_caching": BlockCacheConfig(self.block_cache)}

    @property
    def caching_kwargs(self) -> dict:
        """The caching arguments that differ from their defaults (``block_cache`` among them)."""
        return caching_kwargs(self.configs)

    @property
    def step_kwargs(self) -> dict:
        """The step count and the caching arguments: what the setting changes in a call."""
        return {"num_inference_steps": self.num_inference_steps, **self.caching_kwargs}

    @property
    def kwargs(self) -> dict:
        """Keyword arguments of a DeepCache pipeline call as tuned: ``pipe(prompt, **setting.kwargs)``."""
        return {**self.call, **self.step_kwargs}

    def run(self, pipe, *args, **kwargs):
        """``pipe(*args, **kwargs)`` under this setting; warns (:class:`TunedSettingWarning`) when the call or the
        pipeline's scheduler differs from what it was tuned under, since its measured fidelity is then not known."""
        overridden = sorted(set(self.step_kwargs) & set(kwargs))
        if overridden:
            raise TypeError(f"{overridden} are the setting's own; change the setting (`setting.replace(...)`) instead.")
        differences = [
            f"{k}={kwargs[k]!r} (tuned at {v!r})" for k, v in self.call.items() if k in kwargs and kwargs[k] != v
        ]
        scheduler = type(pipe.scheduler).__name__
        if self.scheduler is not None and scheduler != self.scheduler:
            differences.append(f"scheduler {scheduler} (tuned with {self.scheduler})")
        if differences:
            warnings.warn(
                f"This setting was tuned under other conditions: {', '.join(differences)}; its measured fidelity may "
                "not hold.",
                TunedSettingWarning,
                stacklevel=2,
            )
        return pipe(*args, **{**self.kwargs, **kwargs})

    @property
    def helper_params(self) -> dict:
        """Keyword arguments of ``DeepCacheSDHelper.set_params`` (the call still takes ``num_inference_steps``)."""
        return helper_params(self.caching_kwargs)

    @classmethod
    def from_kwargs(cls, num_inference_steps: int, **caching) -> TunedSetting:
        """The setting of a call with these caching arguments (validated by their configs)."""
        configs = caching_configs(caching)
        return cls(num_inference_steps, configs["deepcache"], configs["block_caching"].block_cache, configs["gating"])

    def describe(self) -> str:
        """A short human description, e.g. ``DeepCache N=3 b1, 50 steps``."""
        c, parts = self.caching, []
        if c.adaptive:
            parts.append(
                f"adaptive threshold {c.cache_threshold:.3g} (runs <= {c.cache_interval}) b{c.cache_branch_id}"
            )
        elif c.cache_full_steps is not None:
            parts.append(f"calibrated {len(c.cache_full_steps)} full steps b{c.cache_branch_id}")
        elif c.enabled:
            shape = (
                "uniform"
                if c.uniform
                else f"non-uniform pow {c.pow or 1.4:g}" + (f" center {c.center}" if c.center is not None else "")
            )
            parts.append(f"DeepCache N={c.cache_interval} b{c.cache_branch_id} {shape}")
        if c.enabled and c.cache_forecast not in (None, "reuse"):
            parts[-1] += " " + ("fitted" if isinstance(c.cache_forecast, ForecastCalibration) else c.cache_forecast)
            parts[-1] += " forecast"
        if self.block_cache is not None:
            delta = "" if self.block_cache.delta is None else f" delta {self.block_cache.delta:.3g}"
            parts.append(f"Block Caching{delta} ({len(self.block_cache.units)} units)")
        if self.gating.enabled:
            parts.append(f"T-GATE gate {self.gating.gate_step}")
        return " + ".join(parts or ["no caching"]) + f", {self.num_inference_steps} steps"

    def to_dict(self) -> dict:
        caching = {
            k: list(v) if isinstance(v, tuple) else v.to_dict() if isinstance(v, ForecastCalibration) else v
            for k, v in self.caching_kwargs.items()
            if k != "block_cache"
        }
        block_cache = None if self.block_cache is None else self.block_cache.to_dict()
        data = {"num_inference_steps": self.num_inference_steps, "caching": caching, "block_cache": block_cache}
        return {**data, "call": dict(self.call), "scheduler": self.scheduler} if self.call or self.scheduler else data

    @classmethod
    def from_dict(cls, data: Mapping) -> TunedSetting:
        caching = dict(data.get("caching", {}))
        if caching.get("cache_full_steps") is not None:
            caching["cache_full_steps"] = tuple(caching["cache_full_steps"])
        if isinstance(caching.get("cache_forecast"), Mapping):
            caching["cache_forecast"] = ForecastCalibration.from_dict(caching["cache_forecast"])
        block = data.get("block_cache")
        block_cache = None if block is None else BlockCacheSchedule.from_dict(block)
        setting = cls.from_kwargs(data["num_inference_steps"], **caching, block_cache=block_cache)
        return setting.replace(call=data.get("call", {}), scheduler=data.get("scheduler"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TunedSetting:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes) -> TunedSetting:
        return dataclasses.replace(self, **changes)
