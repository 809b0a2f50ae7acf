"""What the user asks the tuner for, validated once: the inputs, the target, the families and the budget."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..measurement import input_calls
from ..measurement.fidelity import PSNR_CAP
from ..pipelines import DeepCachePipelineMixin
from ..runtime import diffusers_class, refuse_helper
from .families import FAMILIES


def _check_number(name: str, value, low: float, allow_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"`{name}` must be a number, but got {value!r}.")
    if value < low or (value == low and not allow_low):
        raise ValueError(f"`{name}` must be {'at least' if allow_low else 'greater than'} {low:g}, but got {value!r}.")


@dataclass(frozen=True)
class TuningRequest:
    """One tuning run's question, as :func:`deepcache.tune` was given it; :meth:`of` validates it.

    Args:
        calls (`list[dict]`): the calibration inputs, one dict of call arguments each.
        held_out_calls (`list[dict]`, *optional*): the held-out inputs, scored only for the pick.
        num_steps (`int`): the reference's ``num_inference_steps``.
        target_speedup (`float`, *optional*): the least FLOP speedup (one of the three targets).
        max_flops (`float`, *optional*): the most U-Net FLOPs per call.
        min_fidelity (`float`, *optional*): the least fidelity score.
        metric (`str` or callable): ``"psnr"``, ``"ssim"`` or ``metric(reference, candidate) -> float``.
        families (`tuple[str, ...]`): the families to try, in the order given.
        max_evaluations (`int`): most settings measured on the calibration inputs.
        time_budget (`float`, *optional*): seconds after which no further setting is measured.
        progress (`bool`): a progress bar.
        call_kwargs (`dict`): the call arguments every run shares besides the steps (guidance, sizes, ...):
            the conditions the pick is tuned under.
    """

    calls: list
    held_out_calls: list | None
    num_steps: int
    target_speedup: float | None
    max_flops: float | None
    min_fidelity: float | None
    metric: str | Callable
    families: tuple[str, ...]
    max_evaluations: int
    time_budget: float | None
    progress: bool
    call_kwargs: dict

    @property
    def metric_name(self) -> str:
        return self.metric if isinstance(self.metric, str) else "metric"

    @property
    def user_metric(self) -> Callable | None:
        return None if isinstance(self.metric, str) else self.metric

    @classmethod
    def of(
        cls,
        pipe,
        prompts: str | Sequence[str] | None,
        seeds: Iterable[int],
        *,
        calls: Sequence[dict] | None,
        held_out_prompts,
        held_out_seeds,
        held_out_calls,
        target_speedup: float | None,
        max_flops: float | None,
        min_fidelity: float | None,
        metric,
        families: Sequence[str] | None,
        max_evaluations: int,
        time_budget: float | None,
        progress: bool,
        call_kwargs: dict,
    ) -> TuningRequest:
        """The request for ``tune``'s arguments; a clear error for each bad one, before any run."""
        if not isinstance(pipe, DeepCachePipelineMixin):
            raise TypeError(
                f"`pipe` must be a DeepCache pipeline, but got {type(pipe).__name__}; make one with "
                f"`DeepCache{type(pipe).__name__}.from_pipe(pipe)` (it shares the weights)."
            )
        refuse_helper(pipe, "tuning: the tuner sets caching per call")
        targets = {"target_speedup": target_speedup, "max_flops": max_flops, "min_fidelity": min_fidelity}
        given = [name for name, value in targets.items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                f"Give exactly one of `target_speedup`, `max_flops` and `min_fidelity`, but got {given or 'none'}."
            )
        if not (metric in ("psnr", "ssim") or callable(metric)):
            raise ValueError(
                f"`metric` must be 'psnr', 'ssim' or a callable (reference, candidate) -> float, but got {metric!r}."
            )
        families = tuple(FAMILIES) if families is None else tuple(families)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown or not families:
            raise ValueError(f"`families` must name some of {list(FAMILIES)}, but got {list(families)}.")
        if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, int) or max_evaluations < 1:
            raise ValueError(f"`max_evaluations` must be a positive integer, but got {max_evaluations!r}.")
        if time_budget is not None:
            _check_number("time_budget", time_budget, 0)
        call_kwargs = dict(call_kwargs)
        num_steps = call_kwargs.pop("num_inference_steps", None) or _default_steps(pipe)
        if target_speedup is not None:
            _check_number("target_speedup", target_speedup, 1)
            if target_speedup > num_steps:
                raise ValueError(
                    f"`target_speedup` {target_speedup:g} is unreachable: with {num_steps} steps the fastest setting "
                    f"(one step) is {num_steps}x; ask for at most that, or tune a run with more steps."
                )
        if max_flops is not None:
            _check_number("max_flops", max_flops, 0)
        metric_name = metric if isinstance(metric, str) else "metric"
        if min_fidelity is not None:
            _check_number("min_fidelity", min_fidelity, -math.inf)
            ceiling = {"psnr": PSNR_CAP, "ssim": 1.0}.get(metric_name)
            if ceiling is not None and min_fidelity > ceiling:
                raise ValueError(
                    f"`min_fidelity` {min_fidelity:g} is above what the reference itself scores ({metric_name} "
                    f"{ceiling:g}); "
                    "no setting can reach it."
                )
        tuned_calls = input_calls(prompts, seeds, calls, call_kwargs)
        held_out = None
        if held_out_prompts is not None or held_out_calls is not None or held_out_seeds is not None:
            held_seeds = seeds if held_out_seeds is None else held_out_seeds
            held_out = input_calls(held_out_prompts, held_seeds, held_out_calls, call_kwargs)
        return cls(
            tuned_calls,
            held_out,
            num_steps,
            target_speedup,
            max_flops,
            min_fidelity,
            metric,
            families,
            max_evaluations,
            time_budget,
            progress,
            call_kwargs,
        )

    def tuned_under(self) -> dict:
        """The numeric call arguments every calibration input shares (guidance, sizes, strength, ...): what the
        pick was measured under, for :class:`TunedSetting` to pass again. Prompts, images and generators are
        the inputs, not conditions, and are left out."""
        first, *others = self.calls
        return {
            key: value
            for key, value in first.items()
            if isinstance(value, (bool, int, float)) and all(key in call and call[key] == value for call in others)
        }


def _default_steps(pipe) -> int:
    default = inspect.signature(diffusers_class(type(pipe)).__call__).parameters.get("num_inference_steps")
    if default is None or not isinstance(default.default, int):
        raise ValueError("Pass `num_inference_steps`: this pipeline's call has no default step count.")
    return default.default
