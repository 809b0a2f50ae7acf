"""What a cached step substitutes for the deep feature: the last full step's (reuse), or a forecast from the last two.

TaylorSeer (arXiv 2503.06923) forecasts a cached transformer feature from finite differences of the
features of the last full steps. Here the forecast for a cached iteration ``i``, from full steps
``j < k`` with features ``F_j`` and ``F_k``, is first order::

    F_i = F_k + a_i (F_k - F_j)

``a_i = 0`` is DeepCache's reuse; the ``"linear"`` rule takes ``a_i = (i - k) / (k - j)``, the
straight line through both in step index. ``"auto"`` picks by the pipeline's scheduler at run time
(:mod:`deepcache.runtime.auto_forecast`). A :class:`ForecastCalibration` holds gains fitted by least
squares for one pipeline setting (``deepcache.calibrate_forecast``), per cached iteration, one per
channel or one for all, and refuses a call it was not fitted for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

FORECAST_RULES = ("reuse", "linear", "auto")
"""The fixed rules ``cache_forecast`` names (``None`` is ``"reuse"``)."""


def check_forecast(value) -> None:
    """A clear error for a ``cache_forecast`` that is neither a rule's name, ``None``, nor a calibration."""
    if value is None or isinstance(value, ForecastCalibration):
        return
    if not isinstance(value, str):
        raise TypeError(
            f"`cache_forecast` must be None, one of {list(FORECAST_RULES)} or a ForecastCalibration, "
            f"but got {type(value).__name__}."
        )
    if value not in FORECAST_RULES:
        raise ValueError(
            f"`cache_forecast` must be one of {list(FORECAST_RULES)} or a ForecastCalibration, got {value!r}."
        )


def forecast_depth(forecast) -> int:
    """How many full steps' features a forecast reads: 1 for reuse, 2 for a first-order forecast."""
    return 1 if forecast in (None, "reuse") else 2


def linear_gain(iteration: int, earlier: int, last: int) -> float:
    """The ``"linear"`` rule's gain: the line through full steps ``earlier < last``, at ``iteration``."""
    return (iteration - last) / (last - earlier)


def linear_gains(full_steps: Sequence[int], iterations: Iterable[int]) -> dict[int, float]:
    """The ``"linear"`` rule's gain at each of ``iterations`` that is cached and has two full steps before it."""
    gains = {}
    for iteration in iterations:
        earlier = [step for step in full_steps if step < iteration]
        if iteration not in full_steps and len(earlier) >= 2:
            gains[iteration] = linear_gain(iteration, earlier[-2], earlier[-1])
    return gains


def extrapolate(last: torch.Tensor, earlier: torch.Tensor, gain: float | torch.Tensor) -> torch.Tensor:
    """``last + gain * (last - earlier)``; ``last`` itself, bit for bit, for a gain of 0.

    A tensor ``gain`` has one value per channel (dimension 1 of the features).
    """
    if isinstance(gain, torch.Tensor):
        gain = gain.to(last.device, last.dtype).view(1, -1, *([1] * (last.ndim - 2)))
    elif gain == 0:
        return last
    return last + gain * (last - earlier)


def predict(forecast, history: Sequence[tuple[int, torch.Tensor]], iteration: int) -> torch.Tensor:
    """The deep feature a cached ``iteration`` uses, from ``history``: the last full steps' ``(iteration,
    features)``, oldest first. Reuse until two full steps exist, and for iterations a calibration has no gain for."""
    k, last = history[-1]
    if forecast in (None, "reuse") or len(history) < 2:
        return last
    j, earlier = history[-2]
    if forecast == "linear":
        return extrapolate(last, earlier, linear_gain(iteration, j, k))
    gain = forecast.gain(iteration)
    return last if gain is None else extrapolate(last, earlier, gain)


def _json_safe(value):
    """``value`` if JSON writes it as it is, else its ``repr`` (scheduler configs hold numpy values and lists)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return repr(value)


def scheduler_facts(scheduler) -> dict:
    """What a calibration records of a scheduler: its class and its config's public, JSON-safe entries."""
    config = {k: _json_safe(v) for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    return {"class": type(scheduler).__name__, "config": config}


@dataclass(frozen=True)
class ForecastCalibration:
    """Forecast gains fitted for one pipeline setting; ``cache_forecast=calibration`` applies them.

    Args:
        num_steps (`int`): loop iterations of the calibrated calls.
        full_steps (`tuple[int, ...]`): the full iterations of the schedule it was fitted on.
        branch (`int`): the cached branch.
        gains (`Mapping[int, Sequence[float]]`): per cached iteration, the gain ``a_i`` (one value) or one
            per channel of the feature.
        scheduler (`Mapping`): the scheduler it was fitted with: ``{"class": ..., "config": {...}}``.
        guidance_scale (`float`, *optional*): the call's guidance scale, for pipelines that guide.
        meta (`Mapping`, *optional*): how it was fitted (pipeline, runs, fidelity on the calibration inputs).
    """

    num_steps: int
    full_steps: tuple[int, ...]
    branch: int
    gains: Mapping[int, Sequence[float]]
    scheduler: Mapping = field(default_factory=dict)
    guidance_scale: float | None = None
    meta: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "full_steps", tuple(int(i) for i in self.full_steps))
        gains = {int(i): tuple(float(g) for g in values) for i, values in self.gains.items()}
        object.__setattr__(self, "gains", gains)
        full = set(self.full_steps)
        for i, values in gains.items():
            if not 0 < i < self.num_steps or i in full:
                raise ValueError(f"`gains` names iteration {i}, which is not a cached iteration of this schedule.")
            if not values or not all(math.isfinite(g) for g in values):
                raise ValueError(f"`gains[{i}]` must be one or more finite numbers, but got {values}.")
        if not self.full_steps or self.full_steps[0] != 0:
            raise ValueError(f"`full_steps` must start at iteration 0, but got {self.full_steps}.")

    def gain(self, iteration: int) -> float | torch.Tensor | None:
        """The gain of a cached iteration: a number, a per-channel tensor, or ``None`` (reuse)."""
        values = self.gains.get(iteration)
        if values is None:
            return None
        return values[0] if len(values) == 1 else torch.tensor(values)

    def check_call(self, num_steps: int, full_steps: Sequence[int], branch: int, scheduler, guidance_scale) -> None:
        """A clear ``ValueError`` for a call this calibration was not fitted for."""
        differences = []
        if num_steps != self.num_steps:
            differences.append(f"{num_steps} loop iterations (fitted for {self.num_steps})")
        if tuple(full_steps) != self.full_steps:
            differences.append(f"full steps {tuple(full_steps)} (fitted for {self.full_steps})")
        if branch != self.branch:
            differences.append(f"branch {branch} (fitted for {self.branch})")
        facts = scheduler_facts(scheduler)
        if self.scheduler and facts["class"] != self.scheduler.get("class"):
            differences.append(f"scheduler {facts['class']} (fitted with {self.scheduler.get('class')})")
        elif self.scheduler:
            fitted = self.scheduler.get("config", {})
            changed = sorted(k for k in fitted if k in facts["config"] and facts["config"][k] != fitted[k])
            differences.extend(f"scheduler {k}={facts['config'][k]!r} (fitted with {fitted[k]!r})" for k in changed)
        if (
            self.guidance_scale is not None
            and guidance_scale is not None
            and not math.isclose(float(guidance_scale), self.guidance_scale)
        ):
            differences.append(f"guidance_scale {guidance_scale:g} (fitted for {self.guidance_scale:g})")
        if differences:
            raise ValueError(
                f"This ForecastCalibration was fitted for another call: {'; '.join(differences)}. Fit one for this "
                "call with `deepcache.calibrate_forecast(pipe, prompts, **call_kwargs)`, or pass "
                "`cache_forecast='linear'` or `'reuse'`."
            )

    def to_dict(self) -> dict:
        return {
            "num_steps": self.num_steps,
            "full_steps": list(self.full_steps),
            "branch": self.branch,
            "gains": {str(i): list(values) for i, values in sorted(self.gains.items())},
            "scheduler": dict(self.scheduler),
            "guidance_scale": self.guidance_scale,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ForecastCalibration:
        return cls(
            data["num_steps"],
            data["full_steps"],
            data["branch"],
            data["gains"],
            data.get("scheduler", {}),
            data.get("guidance_scale"),
            data.get("meta", {}),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ForecastCalibration:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        scheduler = self.scheduler.get("class", "?")
        return (
            f"ForecastCalibration({self.num_steps} iterations, {len(self.full_steps)} full, branch {self.branch}, "
            f"{scheduler}, {len(self.gains)} fitted gains)"
        )

    def plot(self, path: str | Path | None = None):
        """The fitted gain per cached iteration beside the ``"linear"`` rule's; saves a PNG to ``path`` if given."""
        from .plots import plot_forecast  # matplotlib loads only when a figure is drawn

        linear = linear_gains(self.full_steps, range(self.num_steps))
        return plot_forecast(self.num_steps, self.full_steps, self.gains, linear, repr(self), path)
