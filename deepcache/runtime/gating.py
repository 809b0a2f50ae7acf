"""Cross-attention gating (T-GATE, Zhang et al., arXiv 2404.02747): its setting, and the run that records and replays.

Text enters a U-Net only through cross-attention, whose outputs settle after the first steps: from
``gate_step`` on they are replayed. With classifier-free guidance the two halves of the batch then
differ only by what cross-attention no longer reads, so the U-Net runs once, on the conditional half.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import torch
from diffusers import UNetSpatioTemporalConditionModel

from ..models import cross_attention_names, take_extra
from ..schedules import check_positive_int
from .base import LoopRun, Technique, unet_sample, unwrap


class GateStepWarning(UserWarning):
    """``gate_step`` is at or past the end of the loop: nothing is gated."""


@dataclass(frozen=True)
class GatingConfig:
    """Whether a pipeline call gates cross-attention.

    Args:
        gate_step (`int`, *optional*): cross-attention gating (T-GATE, arXiv 2404.02747), alone or with
            caching: the first ``gate_step`` iterations compute cross-attention, later ones reuse the
            last of them; with classifier-free guidance the later U-Net calls also run once, on the
            conditional half (guidance stops acting, as in T-GATE).
    """

    gate_step: int | None = None

    def __post_init__(self):
        if self.gate_step is not None:
            check_positive_int("gate_step", self.gate_step)

    @property
    def enabled(self) -> bool:
        return self.gate_step is not None


class GateRun(LoopRun):
    """Cross-attention gating (T-GATE) for one call: record at the gate, replay after it.

    The first ``gate_step`` iterations compute cross-attention; the last of them records every
    layer's output. Later iterations replay those outputs. When the pipeline doubles the batch for
    classifier-free guidance (two equal halves of latents), the recorded outputs are the mean of the
    halves, as in T-GATE; the two halves then differ only by what cross-attention no longer reads,
    so later U-Net calls run once, on the conditional half, and its prediction serves both halves
    (guidance has no further effect). Tensors other runs pass (features, residuals) are cut to
    that half with the inputs.
    """

    def __init__(self, pipeline, gate_step: int):
        super().__init__(pipeline)
        unet = unwrap(pipeline.unet)
        if not cross_attention_names(unet):
            raise ValueError(
                f"`gate_step` gates cross-attention, but this pipeline's {type(unet).__name__} has no cross-attention "
                "layers."
            )
        self.gate_step = gate_step
        self.outputs: dict[int, dict[str, torch.Tensor]] = {}  # per U-Net call of the iteration
        self.halve = False

    def before_unet(self, unet, args, kwargs):
        if self.iteration == 0 and self.call == 0:
            self.warn_if_past_the_end()
        if self.iteration < self.gate_step - 1:
            return args, kwargs
        if self.iteration == self.gate_step - 1:
            self.halve = guided_halves(self.pipeline, args, kwargs)
            return args, {**kwargs, "cross_attention_record": True}
        return args, {**kwargs, "cross_attention_replay": self.outputs[self.call]}

    def reshape_call(self, args, kwargs):
        """After the gate, a guidance batch runs its conditional half only (with what other runs pass)."""
        if self.iteration >= self.gate_step and self.halve:
            sample = unet_sample(args, kwargs)
            return halved_call((args, kwargs), sample.shape[0], frames_of(unwrap(self.pipeline.unet), sample))
        return args, kwargs

    def reshape_output(self, output):
        return both_halves(output) if self.iteration >= self.gate_step and self.halve else output

    def warn_if_past_the_end(self) -> None:
        iterations = self.num_iterations()
        if self.loop_length is None and self.gate_step >= iterations:
            warnings.warn(
                f"`gate_step={self.gate_step}` gates nothing: this call runs {iterations} denoising iterations, and "
                "only "
                f"iterations from `gate_step` on reuse cross-attention; pass at most {iterations - 1}.",
                GateStepWarning,
                stacklevel=2,
            )

    def after_unet(self, unet, args, kwargs, output):
        if self.iteration == self.gate_step - 1:
            outputs, output = take_extra(output, "cross_attention_outputs")
            self.outputs[self.call] = {name: mean_of_halves(o) if self.halve else o for name, o in outputs.items()}
        self.next_call()
        return output


def guided_halves(pipeline, args, kwargs) -> bool:
    """Whether this U-Net call is a guidance batch: the pipeline guides and the latents' halves are equal."""
    sample = unet_sample(args, kwargs)
    if not getattr(pipeline, "do_classifier_free_guidance", False) or sample.shape[0] % 2:
        return False
    half = sample.shape[0] // 2
    return torch.equal(sample[:half], sample[half:])


def conditional_half(tree, rows: tuple[int, ...]):
    """Every tensor in ``tree`` whose first dimension is one of ``rows`` (a guidance batch's), cut to its second
    (conditional) half."""
    if isinstance(tree, torch.Tensor):
        return tree[tree.shape[0] // 2 :] if tree.ndim and tree.shape[0] in rows else tree
    if isinstance(tree, dict):
        return {key: conditional_half(value, rows) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(conditional_half(value, rows) for value in tree)
    return tree


# What the runs carry from earlier U-Net calls: already halved when an earlier call was.
CARRIED = ("replicate_prev_features", "cross_attention_replay", "block_cache_residuals")


def halved_call(call: tuple[tuple, dict], batch: int, frames: int) -> tuple[tuple, dict]:
    """A guidance batch's U-Net call cut to its conditional half.

    The pipeline's arguments are the whole batch: per sample (``batch`` rows) or, for a video U-Net
    that folds frames into its batch, per frame (``batch * frames`` rows, sample after sample). What
    the runs carry from earlier calls is in the U-Net's folded layout, and was halved already if it
    comes from a halved call: it is cut only when it has the whole batch's ``batch * frames`` rows.
    """
    args, kwargs = call
    carried = {key: kwargs[key] for key in CARRIED if key in kwargs}
    rest = {key: value for key, value in kwargs.items() if key not in carried}
    args, rest = conditional_half((args, rest), (batch, batch * frames))
    return args, {**rest, **conditional_half(carried, (batch * frames,))}


def frames_of(unet, sample: torch.Tensor) -> int:
    """Frames per sample of a U-Net that folds frames into its batch (AnimateDiff's layout, or SVD's), else 1."""
    if sample.ndim != 5:
        return 1
    return sample.shape[1] if isinstance(unet, UNetSpatioTemporalConditionModel) else sample.shape[2]


def mean_of_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2)
    return (first + second) / 2


def both_halves(output):
    """The U-Net's output for the halved call, its sample repeated for both halves of the guidance batch."""
    if isinstance(output, tuple):
        return (torch.cat([output[0], output[0]]), *output[1:])
    field = dataclasses.fields(output)[0].name
    return dataclasses.replace(output, **{field: torch.cat([getattr(output, field)] * 2)})


def make_run(pipeline, config: GatingConfig, defaults) -> GateRun:
    return GateRun(pipeline, config.gate_step)


TECHNIQUE = Technique("gating", GatingConfig, make_run)
