"""Adaptive DeepCache: each iteration decides at the branch whether to run in full, from how far it has drifted.

The ControlNet of a pipeline runs whole on adaptive steps: whether a step is cached is decided
inside the U-Net, after the ControlNet ran. The scheduler-weight maths here (:func:`step_weights`)
also serves schedule calibration.
"""

from __future__ import annotations

import math

import torch

from ..schedules import CacheRecord
from .base import FeatureRun, unet_timestep


class AdaptiveDeepCacheRun(FeatureRun):
    """One adaptive DeepCache call: each iteration's first U-Net call decides, at the branch, full or cached.

    The signal accumulates, over the cached iterations since the last full step, the relative L1
    change of the tensor the down path produces at the branch (against that full step's), each
    times the iteration's :func:`step_weights` weight: an estimate of the error the stale features
    have put into the result. A step is full when it reaches ``cache_threshold``, always after
    ``cache_interval`` iterations and never before ``cache_min_interval``. Later U-Net calls of the
    same iteration (separate cond/uncond passes) follow the first one's decision.
    """

    def __init__(self, pipeline, config, branch: int):
        super().__init__(pipeline, config, branch)  # config: a DeepCacheConfig with a cache_threshold
        self.reference: torch.Tensor | None = None  # the branch's tensor at the last full step
        self.signals: dict[int, float] = {}
        self.has_features = False  # whether this U-Net call was given features to replay
        self.weights: tuple[list[float], list[float]] | None = None  # the scheduler's, built once the loop has started
        self.position: int | None = -1  # the iteration's position in the scheduler's timesteps (None: not found)
        self.weight = 1.0  # the iteration's step weight, as step_weights gives it for the loop so far

    def before_unet(self, unet, args, kwargs):
        self.iterations_seen = self.iteration + 1
        if self.call == 0:  # step_weights one iteration at a time: the table once, the position walked forward
            if self.iteration == 0:
                self.weights = schedule_weights(self.pipeline.scheduler)
            if self.weights is not None and self.position is not None:
                self.position = next_position(self.weights[0], unet_timestep(args, kwargs), self.position)
            self.weight = 1.0 if self.weights is None or self.position is None else self.weights[1][self.position]
        features = self.substitute()
        self.has_features = features is not None
        return args, {
            **kwargs,
            "cache_branch_id": self.branch,
            "replicate_prev_features": features,
            "cache_refresh": self.refresh,
        }

    @torch.compiler.disable  # a decision between compiled pieces, not traced into them
    def refresh(self, branch_tensor: torch.Tensor) -> bool:
        iteration = self.iteration
        if self.call > 0:  # the iteration's decision is made; a call without features of its own must refresh
            self.full_call = not self.has_features or (bool(self.ran_full) and self.ran_full[-1] == iteration)
            return self.full_call
        if self.reference is not None:
            reference = self.reference[-len(branch_tensor) :]  # gating may have cut the batch to its conditional half
            self.signals[iteration] = self.signals.get(iteration - 1, 0.0) * (self.ran_full[-1] != iteration - 1)
            self.signals[iteration] += self.weight * relative_l1(branch_tensor, reference)
        since = iteration - self.ran_full[-1] if self.ran_full else None
        if not self.has_features or since is None or since >= self.config.cache_interval:
            full = True
        elif since < self.config.cache_min_interval:
            full = False
        else:
            full = self.signals[iteration] >= self.config.cache_threshold
        if full:
            self.ran_full.append(iteration)
            self.reference = branch_tensor
        self.full_call = full
        return full

    def record(self) -> CacheRecord:
        signals = [self.signals.get(i) for i in range(self.iterations_seen)]
        return CacheRecord(
            self.iterations_seen, self.ran_full, signals, self.config.cache_threshold, forecast=self.forecast_note()
        )


def schedule_weights(scheduler) -> tuple[list[float], list[float]] | None:
    """The scheduler's timesteps and, for each, ``|sigma_k - sigma_(k+1)|`` normalised to mean 1 (sigma 0
    after the last): its ``sigmas`` where it has one per timestep, else ``sqrt((1 - abar) / abar)``
    from ``alphas_cumprod``. ``None`` for a scheduler that has neither."""
    timesteps = getattr(scheduler, "timesteps", None)
    schedule = [] if timesteps is None else [float(t) for t in timesteps]
    sigmas, alphas = getattr(scheduler, "sigmas", None), getattr(scheduler, "alphas_cumprod", None)
    if isinstance(sigmas, torch.Tensor) and len(sigmas) == len(schedule) + 1:
        sigma = [float(value) for value in sigmas[:-1]]
    elif alphas is not None:
        abar = [float(alphas[min(max(round(t), 0), len(alphas) - 1)]) for t in schedule]
        sigma = [math.sqrt((1 - a) / a) for a in abar]
    else:
        return None
    sigma.append(0.0)
    weights = [abs(sigma[k] - sigma[k + 1]) for k in range(len(schedule))]
    mean = sum(weights) / len(weights) if weights else 0.0
    return (schedule, [w / mean for w in weights]) if mean > 0 else None


def next_position(schedule: list[float], timestep: float, after: int) -> int | None:
    """The first position after ``after`` holding ``timestep`` (second-order schedulers repeat timesteps)."""
    return next(
        (q for q in range(after + 1, len(schedule)) if math.isclose(schedule[q], timestep, rel_tol=1e-6, abs_tol=1e-6)),
        None,
    )


def step_weights(scheduler, timesteps: list[float]) -> list[float]:
    """How much of a noise-prediction error each loop iteration passes on to the result.

    The :func:`schedule_weights` weight of each of ``timesteps`` (the loop's, in order) at its
    position in the scheduler's timesteps, walking forward; 1s for a scheduler without sigmas or
    where a timestep is not among its own.
    """
    table = schedule_weights(scheduler)
    positions, k = [], -1
    for t in timesteps:
        k = None if table is None else next_position(table[0], t, k)
        if k is None:
            return [1.0] * len(timesteps)
        positions.append(k)
    return [table[1][k] for k in positions]


def relative_l1(tensor: torch.Tensor, reference: torch.Tensor) -> float:
    """``mean|tensor - reference| / mean|reference|``, in float32."""
    reference = reference.float()
    return ((tensor.float() - reference).abs().mean() / reference.abs().mean().clamp_min(1e-12)).item()
