"""Block Caching's mechanism (Wimbauer et al., arXiv 2312.03209), shared by every U-Net type.

A *unit* is one attention (transformer) block or one resnet inside a U-Net's down, mid or up blocks,
named by its module path, e.g. ``"down_blocks.1.attentions.0"``. Down- and upsamplers are never
units. A unit's *residual* is its residual branch: its output minus its skip path. The skip path is
the input for attention blocks, and ``conv_shortcut(input) / output_scale_factor`` for a
``ResnetBlock2D`` (so a resnet that changes the channel count keeps its 1x1 shortcut, which still
runs on reuse). A unit with no such split (a spatio-temporal resnet that changes channels) caches
its whole output.

A step that *reuses* a unit does not run it: it adds the residual of the last step that computed
the unit to the skip path of the unit's current input. As with DeepCache's branches, the parent class's own
``forward`` runs on a view of the U-Net whose layer lists hold wrappers around the units; the
residuals go in and out as arguments, so the model keeps no state between calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from .views import shallow_view

UNIT_KINDS = {"attentions": ("attentions",), "resnets": ("resnets",), "all": ("resnets", "attentions")}


def block_units(unet: nn.Module, units: str = "attentions") -> tuple[str, ...]:
    """Names of ``unet``'s units of a kind, in the order the forward runs them.

    Args:
        units (`str`, defaults to `"attentions"`): ``"attentions"`` (the paper's choice: transformer
            and attention blocks), ``"resnets"``, or ``"all"``.
    """
    if units not in UNIT_KINDS:
        raise ValueError(f"`units` must be one of {sorted(UNIT_KINDS)}, but got {units!r}.")
    names = []
    for prefix, block in _blocks(unet):
        layers = {kind: getattr(block, kind, None) or () for kind in UNIT_KINDS[units]}
        for index in range(max(map(len, layers.values()), default=0)):  # resnet i runs before attention i
            for kind, modules in layers.items():
                if index < len(modules) and modules[index] is not None:
                    names.append(f"{prefix}.{kind}.{index}")
    return tuple(names)


def _blocks(unet: nn.Module):
    yield from ((f"down_blocks.{i}", block) for i, block in enumerate(unet.down_blocks))
    if unet.mid_block is not None:
        yield "mid_block", unet.mid_block
    yield from ((f"up_blocks.{i}", block) for i, block in enumerate(unet.up_blocks))


def shortcut_splits(unit: nn.Module) -> bool:
    """Whether ``unit`` is a resnet whose skip path is its (optional) 1x1 shortcut, with no resampling."""
    return isinstance(unit, ResnetBlock2D) and unit.upsample is None and unit.downsample is None


def _skip_path(
    unit: nn.Module, hidden_states: torch.Tensor, output_shape: torch.Size, shortcut=None
) -> torch.Tensor | None:
    """What ``unit`` adds its residual branch to, or ``None`` when its whole output is cached.

    ``shortcut`` is ``unit.conv_shortcut(hidden_states)`` when the unit's own forward computed it.
    """
    if shortcut_splits(unit):
        if unit.conv_shortcut is None:
            return hidden_states / unit.output_scale_factor
        return (unit.conv_shortcut(hidden_states) if shortcut is None else shortcut) / unit.output_scale_factor
    return hidden_states if hidden_states.shape == output_shape else None


class _ReusableUnit(nn.Module):
    """Runs a unit and records its residual, or, given one to reuse, adds it to the skip path instead."""

    def __init__(self, unit: nn.Module):
        super().__init__()
        self.unit = unit
        self.reuse: torch.Tensor | None = None
        self.record = False
        self.residual: torch.Tensor | None = None

    def forward(self, *args, **kwargs):
        if args:
            hidden_states, args = args[0], args[1:]
        else:  # a resnet's input is `input_tensor` (AnimateDiff's blocks pass it by name)
            hidden_states = kwargs.pop("input_tensor" if "input_tensor" in kwargs else "hidden_states")
        if self.reuse is not None:
            skip = _skip_path(self.unit, hidden_states, self.reuse.shape)
            output = self.reuse if skip is None else skip + self.reuse
            return (output,) if kwargs.get("return_dict", True) is False else output  # transformers: a tuple
        if not self.record:
            return self.unit(hidden_states, *args, **kwargs)
        shortcut = []
        with contextlib.ExitStack() as stack:  # keep the shortcut the unit computes, rather than computing it twice
            if shortcut_splits(self.unit) and self.unit.conv_shortcut is not None:
                hook = self.unit.conv_shortcut.register_forward_hook(lambda module, args, out: shortcut.append(out))
                stack.callback(hook.remove)
            output = self.unit(hidden_states, *args, **kwargs)
        tensor = output[0] if isinstance(output, tuple) else output
        skip = _skip_path(self.unit, hidden_states, tensor.shape, shortcut[0] if shortcut else None)
        self.residual = tensor if skip is None else tensor - skip
        return output


def build_unit_view(unet: nn.Module) -> tuple[nn.Module, dict[str, _ReusableUnit]]:
    """A view of ``unet`` with every unit wrapped; a wrapper with nothing to do just runs its unit."""
    wrappers = {name: _ReusableUnit(unet.get_submodule(name)) for name in block_units(unet, "all")}
    views = {}
    for prefix, block in _blocks(unet):
        lists = {}
        for kind in UNIT_KINDS["all"]:
            modules = getattr(block, kind, None)
            if modules is not None:
                lists[kind] = nn.ModuleList([wrappers.get(f"{prefix}.{kind}.{i}", m) for i, m in enumerate(modules)])
        views[prefix] = shallow_view(block, **lists)
    down = nn.ModuleList([views[f"down_blocks.{i}"] for i in range(len(unet.down_blocks))])
    up = nn.ModuleList([views[f"up_blocks.{i}"] for i in range(len(unet.up_blocks))])
    view = shallow_view(unet, down_blocks=down, up_blocks=up, mid_block=views.get("mid_block"))
    return view, wrappers


@contextlib.contextmanager
def units_set(wrappers: Mapping[str, _ReusableUnit], units: Sequence[str], residuals: Mapping[str, torch.Tensor]):
    """Within the block, ``units`` record and ``residuals`` are reused; yields a function for the residuals.

    The function returns the residual at this step of each of ``units`` that ran or was reused
    (units a DeepCache cached step cuts do neither).
    """
    if isinstance(units, str):
        raise TypeError(f"`block_cache_units` must be a sequence of unit names, but got the string {units!r}.")
    unknown = [name for name in (*units, *residuals) if name not in wrappers]
    if unknown:
        raise ValueError(f"Block Caching units {unknown} are not in this U-Net; its units are {list(wrappers)}.")

    def recorded() -> dict[str, torch.Tensor]:
        found = {
            name: wrappers[name].residual if wrappers[name].reuse is None else wrappers[name].reuse for name in units
        }
        return {name: residual for name, residual in found.items() if residual is not None}

    try:
        for name in units:
            wrappers[name].record = True
        for name, residual in residuals.items():
            wrappers[name].reuse = residual
        yield recorded
    finally:  # the model keeps no tensor between calls
        for wrapper in wrappers.values():
            wrapper.reuse, wrapper.record, wrapper.residual = None, False, None
