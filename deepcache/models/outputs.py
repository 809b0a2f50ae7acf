"""What a cache-aware U-Net returns besides its sample, by name.

Each mechanism adds one named extra output when a call asks for it. With ``return_dict=True`` the
U-Net returns the parent's output dataclass with one field per name (``None`` when not asked for).
With ``return_dict=False`` it returns ``(sample, extras)``, ``extras`` a dict from these names to
values, except when the only extra is DeepCache's: then ``(sample, features)``, the tensor itself, as
the DeepCache fork's U-Net returns it, so code written against the fork
(``sample, features = unet(..., return_dict=False)``, then ``replicate_prev_features=features``) runs
unchanged. ``replicate_prev_features`` also takes the ``extras`` dict, so both forms round-trip.
Readers take extras by name (:func:`take_extra`), never by position, so runs compose in any order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

EXTRA_OUTPUTS: dict[str, tuple[type, str]] = {
    "features": (torch.Tensor, "DeepCache: the tensor entering the branch's up layer (feed it to a cached step)."),
    "block_residuals": (dict, "Block Caching: the residual of each asked-for unit that ran or was reused."),
    "cross_attention_outputs": (dict, "Cross-attention gating: every cross-attention layer's output, by module path."),
}


def with_extra_outputs(parent: type, module: str) -> type:
    """A dataclass subclass of diffusers' output class ``parent`` with one optional field per extra output,
    defined in ``module`` (where it is importable from)."""
    fields = [(name, kind | None, dataclasses.field(default=None)) for name, (kind, _) in EXTRA_OUTPUTS.items()]
    name = f"DeepCache{parent.__name__}"
    doc = f"``{parent.__name__}`` plus the extra outputs of caching: " + " ".join(
        f"``{key}``: {text}" for key, (_, text) in EXTRA_OUTPUTS.items()
    )
    cls = dataclasses.make_dataclass(name, fields, bases=(parent,), namespace={"__doc__": doc})
    cls.__module__ = module
    return cls


def tuple_output(sample: torch.Tensor, extras: dict) -> tuple:
    """The ``return_dict=False`` output: ``(sample, features)`` when DeepCache's is the only extra (the fork's
    form), else ``(sample, extras)``."""
    if list(extras) == ["features"]:
        return sample, extras["features"]
    return sample, extras


def given_features(value) -> torch.Tensor | None:
    """``replicate_prev_features`` as a tensor: the features themselves, or the ``extras`` dict holding them."""
    if isinstance(value, Mapping) and "features" in value:
        value = value["features"]
    if value is None or isinstance(value, torch.Tensor):
        return value
    kind = f"a dict with keys {sorted(value)}" if isinstance(value, Mapping) else f"a {type(value).__name__}"
    raise TypeError(
        "`replicate_prev_features` must be the `features` tensor a full step returned (or the extras dict holding "
        f"it under 'features'), but got {kind}."
    )


def take_extra(output, name: str):
    """``(value, output)``: the extra output ``name`` of a cache-aware U-Net call, and the output without it.

    A tuple output becomes ``(sample,)`` once every extra is taken: the form the diffusers pipeline
    that called the U-Net expects.
    """
    if isinstance(output, tuple):
        sample, extras = output
        extras = {"features": extras} if isinstance(extras, torch.Tensor) else dict(extras)
        value = extras.pop(name)
        return value, tuple_output(sample, extras) if extras else (sample,)
    return getattr(output, name), dataclasses.replace(output, **{name: None})
