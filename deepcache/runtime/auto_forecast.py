"""``cache_forecast="auto"``: the forecast measured to help with the pipeline's scheduler, and the history a
multistep solver is handed at each full step.

Two findings on the embedded model (docs/forecasting.md, "Why multistep solvers broke the linear rule"):

* **Guidance.** A guided batch holds an unconditional and a conditional half, and guidance multiplies their
  difference (7.5 times at ``guidance_scale=7.5``). Reuse errs alike in both halves (each lags by about as
  much), so their difference stays nearly right; the ``"linear"`` rule errs differently in each, and guidance
  multiplies that. ``"auto"`` forecasts the first group's feature (the unconditional one in diffusers' guided
  batches) with the linear rule and carries each other group's difference to it from the last full step.
* **Multistep solvers.** DPM-Solver++ and DEIS keep the converted predictions of their last steps and
  extrapolate from them, so a cached step's prediction goes into the next full step's extrapolation too.
  At each full step, the entries of the cached steps two or more steps past the last full step (the
  longest forecasts) are replaced by the interpolation, in log-SNR, between the last full step's prediction
  and this one's. (Replacing the entry of a forecast one step past a full step too was measured worse.)

Schedulers not measured to gain from either (UniPC, PNDM, LMS, Heun, the ancestral and SDE ones, ...) reuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..schedules import extrapolate

GUIDED_LINEAR = ("DDIMScheduler", "EulerDiscreteScheduler")
"""Schedulers whose cached steps ``"auto"`` feeds the guided linear forecast."""

GUIDED_LINEAR_WITH_HISTORY = ("DPMSolverMultistepScheduler", "DEISMultistepScheduler")
"""Multistep schedulers that also get the full steps' history (their ``model_outputs``)."""

LINEAR_HURTS = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler")
"""Schedulers with which ``"linear"`` was measured far below reuse (5-10 dB at 25 steps, guidance 7.5)."""


def _named(scheduler, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that is ``scheduler``'s class or a parent of it."""
    return next((cls.__name__ for cls in type(scheduler).__mro__ if cls.__name__ in names), None)


class LinearForecastWarning(UserWarning):
    """``cache_forecast="linear"`` with a scheduler it was measured to hurt."""


def linear_hurts(scheduler) -> bool:
    """Whether the ``"linear"`` rule was measured to hurt with this scheduler (a call with it warns)."""
    return _named(scheduler, LINEAR_HURTS) is not None


@dataclass(frozen=True)
class AutoForecast:
    """What ``cache_forecast="auto"`` does with one scheduler.

    Args:
        forecast (`str`): ``"linear"`` (the guided linear forecast) or ``"reuse"``.
        history (`bool`): whether the solver's history is handed the full steps' predictions.
        reason (`str`): why, in a few words.
    """

    forecast: str
    history: bool
    reason: str


def auto_forecast(scheduler) -> AutoForecast:
    """What ``"auto"`` does with ``scheduler`` (by its class, or the diffusers class it extends)."""
    config = getattr(scheduler, "config", {})
    multistep = _named(scheduler, GUIDED_LINEAR_WITH_HISTORY)
    if multistep and str(config.get("algorithm_type", "")).startswith("sde"):  # fresh noise every step, as ancestral
        return AutoForecast("reuse", False, f"{multistep}, SDE: stochastic, reuse")
    if multistep and config.get("solver_order", 2) > 1:
        return AutoForecast("linear", True, f"{multistep}: guided linear forecast, history from full steps")
    if multistep:
        return AutoForecast("linear", False, f"{multistep}, first order: guided linear forecast")
    single = _named(scheduler, GUIDED_LINEAR)
    if single:
        return AutoForecast("linear", False, f"{single}: guided linear forecast")
    return AutoForecast("reuse", False, f"{type(scheduler).__name__}: not measured to gain from a forecast, reuse")


def guided_extrapolate(last: torch.Tensor, earlier: torch.Tensor, gain: float, groups: int) -> torch.Tensor:
    """The linear forecast of a batch of ``groups`` guidance groups (dimension 0): the first group's feature
    extrapolated, each other group's difference to it carried from ``last``."""
    if groups == 1:
        return extrapolate(last, earlier, gain)
    parts = last.chunk(groups)
    first = extrapolate(parts[0], earlier.chunk(groups)[0], gain)
    return torch.cat([first, *(first + (part - parts[0]) for part in parts[1:])])


def _log_snr(scheduler, position: int) -> float:
    alpha, sigma = scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[position])
    return float(torch.log(alpha) - torch.log(sigma))


class HistoryHandOver:
    """Hands a multistep scheduler, at each full step, a history made of full steps' predictions only."""

    def __init__(self):
        self.last_full: tuple[int, torch.Tensor] | None = None  # (iteration, converted prediction)

    def before_step(self, scheduler, iteration: int, ran_full, model_output, sample) -> None:
        """Called before ``scheduler.step`` of ``iteration``; ``ran_full``: the iterations that ran in full."""
        if iteration - 1 in ran_full and scheduler.step_index is not None:
            self.last_full = (iteration - 1, scheduler.model_outputs[-1])
        if iteration not in ran_full or self.last_full is None or self.last_full[0] >= iteration - 2:
            return  # a forecast one step past a full step stays: the solver extrapolates from it well
        start, earlier = self.last_full
        position = scheduler.step_index
        current = scheduler.convert_model_output(model_output, sample=sample)
        start_snr, current_snr = _log_snr(scheduler, position - (iteration - start)), _log_snr(scheduler, position)
        if not math.isfinite(current_snr - start_snr) or current_snr == start_snr:
            return
        for cached in range(max(start + 2, iteration - len(scheduler.model_outputs)), iteration):
            weight = (_log_snr(scheduler, position - (iteration - cached)) - start_snr) / (current_snr - start_snr)
            scheduler.model_outputs[cached - iteration] = earlier + weight * (current - earlier)
