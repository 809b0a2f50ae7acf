"""What one cached pipeline call did: its full steps and, for adaptive caching, the signal that chose them."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheRecord:
    """The full loop iterations of one pipeline call (``pipe.deepcache_record`` after the call).

    Args:
        num_iterations (`int`): loop iterations the call ran.
        full_steps (`tuple[int, ...]`): the iterations that ran the whole U-Net; all others were cached.
        signals (`tuple[float | None, ...]`): adaptive caching only, one per iteration: the sum the
            threshold was compared with, the step-weighted relative L1 changes of the branch's tensor
            since the last full step (``None`` before the first one).
        threshold (`float`, *optional*): the adaptive call's ``cache_threshold``.
        loop_lengths (`tuple[int, ...]`): for a call that ran several denoising loops (Marigold's
            ensemble, FreeInit, Text2Video-Zero), the iterations of each, in order; empty for one loop.
        forecast (`str`): with ``cache_forecast="auto"``, what the cached steps were fed and why.
    """

    num_iterations: int
    full_steps: tuple[int, ...]
    signals: tuple[float | None, ...] = ()
    threshold: float | None = None
    loop_lengths: tuple[int, ...] = ()
    forecast: str = ""

    def __post_init__(self):
        object.__setattr__(self, "full_steps", tuple(self.full_steps))
        object.__setattr__(self, "signals", tuple(self.signals))
        object.__setattr__(self, "loop_lengths", tuple(self.loop_lengths))
        if self.loop_lengths and sum(self.loop_lengths) != self.num_iterations:
            raise ValueError(
                f"`loop_lengths` {self.loop_lengths} must add up to `num_iterations` ({self.num_iterations})."
            )
        if any(not 0 <= step < self.num_iterations for step in self.full_steps):
            raise ValueError(f"`full_steps` must lie in [0, {self.num_iterations - 1}], but got {self.full_steps}.")
        if self.signals and len(self.signals) != self.num_iterations:
            raise ValueError(
                f"`signals` must have one entry per iteration ({self.num_iterations}), but got {len(self.signals)}."
            )

    @classmethod
    def concatenate(cls, records: Sequence[CacheRecord]) -> CacheRecord:
        """One record for a call that ran several loops, their iterations in order (``loop_lengths`` says where
        each starts)."""
        if len(records) == 1:
            return records[0]
        offsets = itertools.accumulate((r.num_iterations for r in records), initial=0)
        full_steps = [offset + step for offset, record in zip(offsets, records) for step in record.full_steps]
        signals = [s for record in records for s in record.signals] if records[0].threshold is not None else ()
        lengths = tuple(r.num_iterations for r in records)
        return cls(sum(lengths), full_steps, signals, records[0].threshold, lengths, records[0].forecast)

    @property
    def lengths(self) -> tuple[int, ...]:
        """The iterations of each loop (one entry for a one-loop call)."""
        return self.loop_lengths or (self.num_iterations,)

    def loops(self) -> tuple[tuple[int, ...], ...]:
        """Each loop's full iterations, counted from the loop's first (one entry for a one-loop call)."""
        start, loops = 0, []
        for length in self.lengths:
            loops.append(tuple(step - start for step in self.full_steps if start <= step < start + length))
            start += length
        return tuple(loops)

    @property
    def cached_fraction(self) -> float:
        """Share of the iterations that were cached steps."""
        return 1 - len(self.full_steps) / self.num_iterations if self.num_iterations else 0.0

    def to_dict(self) -> dict:
        return {
            "num_iterations": self.num_iterations,
            "full_steps": list(self.full_steps),
            "signals": list(self.signals),
            "threshold": self.threshold,
            "loop_lengths": list(self.loop_lengths),
            "forecast": self.forecast,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> CacheRecord:
        return cls(
            data["num_iterations"],
            data["full_steps"],
            data.get("signals", ()),
            data.get("threshold"),
            data.get("loop_lengths", ()),
            data.get("forecast", ""),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CacheRecord:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __str__(self) -> str:
        """One character per iteration: ``#`` full, ``.`` cached; ``|`` between loops."""
        steps = "|".join(
            "".join("#" if i in full else "." for i in range(length))
            for full, length in zip(self.loops(), self.lengths)
        )
        kind = "fixed schedule" if self.threshold is None else f"adaptive, threshold {self.threshold:g}"
        forecast = f"; forecast: {self.forecast}" if self.forecast else ""
        return (
            f"DeepCache call, {kind}: {len(set(self.full_steps))} of {self.num_iterations} iterations full{forecast}\n"
            f"{steps}"
        )

    def plot(self, path: str | Path | None = None):
        """The signal per iteration with the threshold, and the full steps marked
        (:func:`deepcache.schedules.plots.plot_record`)."""
        from .plots import plot_record  # matplotlib loads only when a figure is drawn

        return plot_record(self.num_iterations, self.full_steps, self.signals, self.threshold, path)
