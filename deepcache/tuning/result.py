"""What a tuning run found: every measured setting, the Pareto front, the pick and its held-out check."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .setting import TunedSetting

# How far a pick's held-out score may fall below its calibration score before it is flagged.
TOLERANCE = {"psnr": 1.0, "ssim": 0.02}
RELATIVE_TOLERANCE = 0.05  # for a user's metric: of the calibration score's magnitude


@dataclass(frozen=True)
class TunedPoint:
    """One measured setting.

    Args:
        family (`str`): how it was built ("fewer steps", "DeepCache uniform", ...).
        setting (`TunedSetting`): what to pass to the pipeline.
        speedup (`float`): U-Net FLOPs of the reference call over this setting's (mean over the inputs).
        flops (`float`): U-Net FLOPs of one call on the inputs, on average.
        scores (`Mapping[str, float]`): fidelity to the reference on the calibration inputs: ``psnr``
            (dB, mean, each capped at 100), ``ssim``, and ``metric`` when the user gave one.
        full_steps (`float`, *optional*): mean full steps per call of a cached setting.
        held_out (`Mapping[str, float]`, *optional*): the same scores on the held-out inputs.
        measured_speedup (`float`, *optional*): wall-clock speedup over the reference, when timed.
    """

    family: str
    setting: TunedSetting
    speedup: float
    flops: float
    scores: Mapping[str, float]
    full_steps: float | None = None
    held_out: Mapping[str, float] | None = None
    measured_speedup: float | None = None

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "setting": self.setting.to_dict(),
            "speedup": self.speedup,
            "flops": self.flops,
            "scores": dict(self.scores),
            "full_steps": self.full_steps,
            "held_out": None if self.held_out is None else dict(self.held_out),
            "measured_speedup": self.measured_speedup,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> TunedPoint:
        return cls(
            data["family"],
            TunedSetting.from_dict(data["setting"]),
            data["speedup"],
            data["flops"],
            data["scores"],
            data.get("full_steps"),
            data.get("held_out"),
            data.get("measured_speedup"),
        )


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` is at least as fast and as faithful as ``b``, and better in one."""
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def pareto_front(points: Sequence[TunedPoint], metric: str) -> tuple[TunedPoint, ...]:
    """The points no other is both faster and more faithful than (one per equal pair), fastest last."""
    keys = [(p.speedup, p.scores.get(metric)) for p in points]
    front = {k: p for p, k in zip(points, keys) if not any(dominates(other, k) for other in keys)}
    return tuple(sorted(front.values(), key=lambda p: p.speedup))


@dataclass(frozen=True)
class TuningResult:
    """Every setting a tuning run measured, the pick, and how the pick held up on inputs it did not see.

    ``best.setting.kwargs`` applies the pick to a call; ``front`` holds the settings no other is both
    faster and more faithful than; ``plot()`` draws them, ``table()`` lists them, ``save()`` keeps them.

    Args:
        points (`Sequence[TunedPoint]`): every measured setting, in the order measured.
        best (`int`, *optional*): index of the pick in ``points``.
        target (`Mapping`): ``{"speedup": x}``, ``{"max_flops": x}`` or ``{"min_fidelity": x}``.
        metric (`str`): the score the pick maximises: ``"psnr"``, ``"ssim"`` or ``"metric"`` (the user's).
        reference (`Mapping`): the reference call: ``num_inference_steps`` and U-Net ``flops`` per call.
        meta (`Mapping`): pipeline, scheduler, input counts, evaluations, seconds, why it stopped.
    """

    points: tuple[TunedPoint, ...]
    best: int | None
    target: Mapping
    metric: str
    reference: Mapping
    meta: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "points", tuple(self.points))

    @property
    def chosen(self) -> TunedPoint | None:
        """The picked point (``None`` only if nothing was measured)."""
        return None if self.best is None else self.points[self.best]

    def score(self, point: TunedPoint, held_out: bool = False) -> float | None:
        scores = point.held_out if held_out else point.scores
        return None if scores is None else scores.get(self.metric)

    @property
    def front(self) -> tuple[TunedPoint, ...]:
        """The Pareto front of (FLOP speedup, score), fastest last."""
        return pareto_front(self.points, self.metric)

    def tolerance(self, value: float) -> float:
        return TOLERANCE.get(self.metric, RELATIVE_TOLERANCE * abs(value))

    @property
    def generalisation(self) -> dict | None:
        """The pick's score on calibration and held-out inputs, and whether it holds there.

        Held-out inputs may simply be harder, so the pick is compared with the other re-scored settings:
        it is ``flagged`` when its score falls by more than theirs do (median) plus the tolerance (1 dB
        PSNR, 0.02 SSIM, 5 % of a user metric; without others, by more than the tolerance), or when another
        family's pick that meets the target beats it there by more than the tolerance (for a fidelity
        target: is faster and keeps the fidelity there).
        """
        best = self.chosen
        if best is None or best.held_out is None:
            return None
        calibration, held_out = self.score(best), self.score(best, held_out=True)
        others = [p for p in self.points if p is not best and p.held_out is not None]
        usual_drop = statistics.median(self.score(p) - self.score(p, held_out=True) for p in others) if others else 0.0
        drop, reasons = calibration - held_out, []
        if drop > usual_drop + self.tolerance(calibration):
            reasons.append(
                f"its score falls {drop:.3g} on held-out inputs (calibration {calibration:.4g}, held-out "
                f"{held_out:.4g}), "
                f"the other settings' {usual_drop:.3g}"
            )
        rivals = [p for p in others if meets(p, self.target, self.metric)]
        if "min_fidelity" in self.target:  # there the pick is the fastest: a rival must be faster and keep the fidelity
            reasons += [
                f"on held-out inputs {p.family} ({p.setting.describe()}) keeps the fidelity at {p.speedup:.2f}x"
                for p in rivals
                if p.speedup > best.speedup and meets(p, self.target, self.metric, held_out=True)
            ]
        else:
            reasons += [
                f"on held-out inputs {p.family} ({p.setting.describe()}) scores {self.score(p, held_out=True):.4g} at "
                f"{p.speedup:.2f}x"
                for p in rivals
                if self.score(p, held_out=True) > held_out + self.tolerance(held_out)
            ]
        return {
            "calibration": calibration,
            "held_out": held_out,
            "usual_drop": usual_drop,
            "flagged": bool(reasons),
            "reasons": reasons,
        }

    def table(self) -> str:
        """Markdown: every measured setting, front and pick marked, held-out scores where measured."""
        extra = "metric | " if any("metric" in p.scores for p in self.points) else ""
        lines = [
            f"| | family | setting | FLOP speedup | measured speedup | PSNR (dB) | SSIM | {extra}held-out "
            f"{self.metric} |",
            "|---|---|---|---|---|---|---|" + ("---|" if extra else "") + "---|",
        ]
        front = {id(p) for p in self.front}
        for index, p in sorted(enumerate(self.points), key=lambda item: (item[1].speedup, item[0])):
            mark = "**pick**" if index == self.best else ("front" if id(p) in front else "")
            measured = "-" if p.measured_speedup is None else f"{p.measured_speedup:.2f}x"
            user = f"{p.scores['metric']:.4g} | " if extra else ""
            held = "-" if p.held_out is None else f"{self.score(p, held_out=True):.4g}"
            lines.append(
                f"| {mark} | {p.family} | {p.setting.describe()} | {p.speedup:.2f}x | {measured} | "
                f"{p.scores['psnr']:.2f} | {p.scores['ssim']:.4f} | {user}{held} |"
            )
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        target = ", ".join(f"{k} {v:g}" for k, v in self.target.items())
        best = self.chosen
        lines = [
            f"Tuned for {target} ({self.metric}), {len(self.points)} settings measured, "
            f"{len(self.front)} on the front, {self.meta.get('seconds', 0):.0f} s."
        ]
        if best is not None:
            lines.append(
                f"Pick: {best.family}: {best.setting.describe()}: {best.speedup:.2f}x FLOPs, "
                f"PSNR {best.scores['psnr']:.2f} dB, SSIM {best.scores['ssim']:.4f}"
            )
            lines.append(f"  pipe(..., **{_short(best.setting.kwargs)})")
        check = self.generalisation
        if check is not None:
            verdict = "FLAGGED: " + "; ".join(check["reasons"]) if check["flagged"] else "holds"
            lines.append(
                f"Held-out check: {self.metric} {check['held_out']:.4g} (calibration {check['calibration']:.4g}; "
                f"the other re-scored settings fall {check['usual_drop']:.3g}): {verdict}"
            )
        if self.meta.get("stopped"):
            lines.append(f"Stopped early: {self.meta['stopped']}.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "points": [p.to_dict() for p in self.points],
            "best": self.best,
            "target": dict(self.target),
            "metric": self.metric,
            "reference": dict(self.reference),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> TuningResult:
        return cls(
            [TunedPoint.from_dict(p) for p in data["points"]],
            data.get("best"),
            data["target"],
            data["metric"],
            data["reference"],
            data.get("meta", {}),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TuningResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, path: str | Path | None = None):
        """Fidelity against FLOP speedup: each family in its own colour, the front as a line, the pick
        starred (hollow: its held-out score), the target dashed. Saved to ``path`` if given; returns the figure."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7.5, 4.8))
        families = list(dict.fromkeys(p.family for p in self.points))
        for index, family in enumerate(families):
            rows = [p for p in self.points if p.family == family]
            marker = "D" if family == "pipeline default" else "o"  # often on top of another family's point
            axis.plot(
                [p.speedup for p in rows],
                [self.score(p) for p in rows],
                marker,
                color=plt.cm.tab10(index % 10),
                label=family,
                alpha=0.85,
                markersize=9 if marker == "D" else 6,
                fillstyle="none" if marker == "D" else "full",
            )
        front = self.front
        axis.plot(
            [p.speedup for p in front],
            [self.score(p) for p in front],
            "-",
            color="black",
            linewidth=1,
            label="Pareto front",
        )
        best = self.chosen
        if best is not None:
            axis.plot(
                best.speedup, self.score(best), "*", color="gold", markeredgecolor="black", markersize=16, label="pick"
            )
            if best.held_out is not None:
                axis.plot(
                    best.speedup,
                    self.score(best, held_out=True),
                    "*",
                    color="none",
                    markeredgecolor="black",
                    markersize=16,
                    label="pick, held-out inputs",
                )
        if "speedup" in self.target:
            axis.axvline(
                self.target["speedup"], color="grey", linestyle="--", label=f"target {self.target['speedup']:g}x"
            )
        if "min_fidelity" in self.target:
            axis.axhline(
                self.target["min_fidelity"],
                color="grey",
                linestyle="--",
                label=f"target {self.target['min_fidelity']:g}",
            )
        names = {"psnr": "PSNR vs reference (dB)", "ssim": "SSIM vs reference", "metric": "user metric vs reference"}
        title = f"{self.meta.get('pipeline', 'pipeline')}, {self.reference.get('num_inference_steps')} steps"
        axis.set(
            xlabel="FLOP speedup over the reference (U-Net)", ylabel=names.get(self.metric, self.metric), title=title
        )
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=120)
            plt.close(figure)
        return figure


def _short(kwargs: Mapping) -> str:
    """A call's keyword arguments as code, a schedule shortened."""
    parts = []
    for key, value in kwargs.items():
        text = "<BlockCacheSchedule>" if key == "block_cache" else repr(value)
        parts.append(f"{key}={text}")
    return "dict(" + ", ".join(parts) + ")"


def meets(point: TunedPoint, target: Mapping, metric: str, held_out: bool = False) -> bool:
    """Whether ``point`` reaches ``target`` (a fidelity target on its held-out scores if asked)."""
    if "min_fidelity" in target:
        return (point.held_out if held_out else point.scores)[metric] >= target["min_fidelity"]
    if "speedup" in target:
        return point.speedup >= target["speedup"] * (1 - 1e-9)
    return point.flops <= target["max_flops"] * (1 + 1e-9)


def pick(points: Sequence[TunedPoint], target: Mapping, metric: str) -> int | None:
    """Index of the best point for ``target``: the highest score at the speedup (or under the FLOPs),
    or the fastest at the fidelity; ties go to the faster, then the earlier measured."""
    eligible = [i for i, point in enumerate(points) if meets(point, target, metric)]
    if "min_fidelity" in target:
        return max(eligible, key=lambda i: (points[i].speedup, points[i].scores[metric], -i), default=None)
    return max(eligible, key=lambda i: (points[i].scores[metric], points[i].speedup, -i), default=None)
