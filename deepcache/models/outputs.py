"""What a cache-aware U-Net returns besides its sample, by name.

Each mechanism adds one named extra output when a call asks for it. With ``return_dict=False`` the
U-Net returns ``(sample, extras)``, ``extras`` a dict from these names to values; with
``return_dict=True``, the parent's output dataclass with one field per name (``None`` when not
asked for). Readers take extras by name, never by position, so runs compose in any order.
"""

from __future__ import annotations

import dataclasses

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


def take_extra(output, name: str):
    """``(value, output)``: the extra output ``name`` of a cache-aware U-Net call, and the output without it.

    A tuple output ``(sample, extras)`` becomes ``(sample,)`` once every extra is taken: the form
    the diffusers pipeline that called the U-Net expects.
    """
    if isinstance(output, tuple):
        sample, extras = output
        extras = dict(extras)
        value = extras.pop(name)
        return value, (sample, extras) if extras else (sample,)
    return getattr(output, name), dataclasses.replace(output, **{name: None})
