"""Which loop iterations are full steps: pure functions of the iteration count and parameters.

Every iteration not listed is a cached step. A step is a loop iteration, never a timestep value:
second-order schedulers (Heun, DPM2) call the U-Net twice per timestep, and img2img with
``strength < 1`` runs fewer iterations than ``num_inference_steps``.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_POW = 1.4
DEFAULT_CENTER_FRACTION = 0.3  # the published centre, 15 of 50 PLMS steps


def uniform_full_steps(num_steps: int, interval: int) -> tuple[int, ...]:
    """Full steps ``0, N, 2N, ...`` for cache interval ``N`` (``N = 1``: every step is full)."""
    check_positive_int("num_steps", num_steps)
    check_positive_int("cache_interval", interval)
    return tuple(range(0, num_steps, interval))


def nonuniform_full_steps(
    num_steps: int, interval: int, center: int | None = None, pow: float | None = None
) -> tuple[int, ...]:
    """Full steps denser around ``center`` and sparser far from it (DeepCache paper, Eq. 7).

    Reproduces the reference ``sample_from_quad_center`` exactly, including its arithmetic in complex
    numbers (``(-center) ** (1 / pow)`` is complex; only real parts survive the integer cast), so the
    published ``(center, pow)`` values carry over. When the grid cannot give ``ceil(num_steps /
    interval)`` distinct steps, ``pow`` is lowered by 0.02 and the grid recomputed, as the reference does.

    Args:
        num_steps (`int`): loop iterations that will run.
        interval (`int`): cache interval ``N``; ``ceil(num_steps / N)`` steps are full.
        center (`int`, *optional*, defaults to `round(0.3 * num_steps)`): the step where full steps are
            densest; the paper uses 15 of 50 PLMS steps.
        pow (`float`, *optional*, defaults to `1.4`): how strongly full steps gather near ``center``;
            must be greater than 1.
    """
    check_positive_int("num_steps", num_steps)
    check_positive_int("cache_interval", interval)
    if interval == 1:
        return tuple(range(num_steps))
    center = round(DEFAULT_CENTER_FRACTION * num_steps) if center is None else center
    pow = DEFAULT_POW if pow is None else pow
    _check_center(center, num_steps)
    check_pow(pow)

    count = math.ceil(num_steps / interval)
    power = float(pow)
    while power > 1:
        grid = np.linspace((-center) ** (1 / power), (num_steps - center) ** (1 / power), count + 1)
        offsets = np.unique(np.real(grid**power).astype(np.int32))[1:-1]
        steps = (0, *(int(offset) + center for offset in offsets))
        if len(steps) == count:
            return steps
        power -= 0.02
    raise ValueError(
        f"No non-uniform schedule with {count} full steps fits {num_steps} steps around center={center} "
        f"for pow <= {pow}: use a larger `cache_interval`, a `center` nearer the middle, or `uniform=True`."
    )


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be a positive integer, but got {value!r}.")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer, but got {value}.")


def _check_center(center, num_steps: int) -> None:
    if isinstance(center, bool) or not isinstance(center, (int, np.integer)):
        raise TypeError(f"`center` must be an integer step index, but got {center!r}.")
    if not 0 <= center < num_steps:
        raise ValueError(f"`center` must be in [0, {num_steps - 1}] for {num_steps} steps, but got {center}.")


def check_pow(pow) -> None:
    if isinstance(pow, bool) or not isinstance(pow, (int, float)):
        raise TypeError(f"`pow` must be a number greater than 1, but got {pow!r}.")
    if not pow > 1:
        raise ValueError(f"`pow` must be greater than 1, but got {pow}.")
