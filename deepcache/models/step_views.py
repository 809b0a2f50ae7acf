"""The views one cached branch runs: the full step that taps the branch's feature, the cached step that replays it,
and the deep layers an adaptive step may run; the small modules that carry the feature between them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .layout import BranchLayout
from .views import layer_view, shallow_view


class _Replay(nn.Module):
    """Stands in for the mid block on a cached step: returns the stored deep feature.

    On an adaptive step it first asks ``refresh`` about the tensor the down path produced at the
    branch; when that says refresh, it runs ``deep`` on it (the layers deeper than the branch) and
    returns, and keeps, the new deep feature instead. The tensor it gets is the branch's skip, so it
    knows the batch and size the stored feature must have; ``joined_channels``, the input channels of
    the up layer that joins the two (``None`` where the layer does not say), gives the channels.
    """

    def __init__(self, branch: int, joined_channels: int | None):
        super().__init__()
        self.branch = branch
        self.joined_channels = joined_channels
        self.features: torch.Tensor | None = None
        self.refresh: Callable[[torch.Tensor], bool] | None = None
        self.deep: Callable[[torch.Tensor], torch.Tensor] | None = None

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.refresh is not None and self.refresh(hidden_states):
            self.features = self.deep(hidden_states)
        elif self.features is None:
            raise ValueError("`cache_refresh` chose to replay, but no `replicate_prev_features` were given.")
        else:
            self._check(hidden_states)
        return self.features

    def _check(self, skip: torch.Tensor) -> None:
        """A clear error for features that do not fit this step: another batch, size or branch."""
        joined = self.joined_channels
        channels = "C" if joined is None else joined - skip.shape[1]
        expected = (skip.shape[0], channels, *skip.shape[2:])
        given = tuple(self.features.shape)
        if len(given) != len(expected) or any(e != g for e, g in zip(expected, given) if e != "C"):
            shape = "(" + ", ".join(str(e) for e in expected) + ")"
            raise ValueError(
                f"`replicate_prev_features` must have shape {shape} for a cached step at branch {self.branch} with "
                f"this input, but got {given}: pass the `features` of a full step at the same branch, with the same "
                "batch and size."
            )


def _in_channels(layer: nn.Module) -> int | None:
    """The input channels of an up layer's resnet (a spatio-temporal one wraps a 2D resnet), if it says."""
    resnet = getattr(layer, "spatial_res_block", layer)
    return getattr(resnet, "in_channels", None)


class _Inject(nn.Module):
    """Stands in for ``conv_in`` in the deep view: the deep layers start from the branch's tensor."""

    def __init__(self):
        super().__init__()
        self.features: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.features


class _PassOnFirst(nn.Module):
    """Stands in for a 3D U-Net's ``transformer_in`` in the deep view: the branch's tensor goes on as it is."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor]:
        return (hidden_states,)


class _DownsampleOnly(nn.Module):
    """A down block after its last layer, in the deep view: only its downsampler runs (its layers ran in the
    cached view). It stands where the block stood, so it takes what the block took, T2I-Adapter residual included,
    and adds nothing of its layers."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.downsamplers = block.downsamplers
        self.has_cross_attention = getattr(block, "has_cross_attention", False)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        for downsampler in self.downsamplers:
            hidden_states = downsampler(hidden_states)
        return hidden_states, (hidden_states,)


class _Stop(nn.Module):
    """The last up block of the deep view: records the deep feature and passes it on unchanged.

    It consumes no skip (``resnets`` is empty), so the branch's own skip stays for the cached view.
    """

    def __init__(self):
        super().__init__()
        self.resnets = nn.ModuleList()
        self.features: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.features = hidden_states
        return hidden_states


class _Tap(nn.Module):
    """Wraps the up block that starts at the cached branch and records the tensor entering it."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.resnets = block.resnets  # the parent forward slices skips by len(block.resnets)
        self.has_cross_attention = getattr(block, "has_cross_attention", False)
        self.features: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        self.features = hidden_states
        return self.block(hidden_states, *args, **kwargs)


@dataclass
class StepViews:
    """The views of one U-Net for one branch, and the modules that carry the deep feature.

    ``full`` computes exactly the whole network and ``tap`` records the tensor entering the
    branch's up layer; ``cached`` runs only the shallow layers and ``replay`` feeds it the feature.
    ``deep`` runs only the layers deeper than the branch: ``inject`` feeds it the branch's tensor
    and ``stop`` records the feature it produces. An adaptive step is ``cached`` whose ``replay``
    may call ``deep``: together they run every layer once, as ``full`` does. Of T2I-Adapter's
    residuals (one per down block), ``cached`` applies the first ``cached_adapter`` and ``deep``
    those from ``deep_adapter`` on (see :func:`adapter_split`).
    """

    full: nn.Module
    tap: _Tap
    cached: nn.Module
    replay: _Replay
    deep: nn.Module
    inject: _Inject
    stop: _Stop
    cached_adapter: int
    deep_adapter: int


def build_views(unet: nn.Module, layout: BranchLayout, branch: int) -> StepViews:
    block_index, layer = layout.up_cut(branch)
    block = unet.up_blocks[block_index]
    deeper_up, shallower_up = unet.up_blocks[:block_index], unet.up_blocks[block_index + 1 :]
    if layer == 0:
        tap, deeper_part = _Tap(block), []
    else:  # split the block: its deeper layers, then the rest with the upsampler
        tap, deeper_part = (
            _Tap(layer_view(block, slice(layer, None))),
            [layer_view(block, slice(0, layer), upsamplers=None)],
        )
    full = shallow_view(unet, up_blocks=nn.ModuleList([*deeper_up, *deeper_part, tap, *shallower_up]))

    whole, down_layers = layout.down_cut(branch)
    down, deeper_down = list(unet.down_blocks[:whole]), list(unet.down_blocks[whole:])
    if down_layers:
        block = unet.down_blocks[whole]
        down.append(layer_view(block, slice(0, down_layers), downsamplers=None))
        last = down_layers == len(block.resnets)
        deeper_down[0] = _DownsampleOnly(block) if last else layer_view(block, slice(down_layers, None))
    up = [tap.block, *shallower_up]
    replay = _Replay(branch, _in_channels(up[0].resnets[0]))
    cached = shallow_view(unet, down_blocks=nn.ModuleList(down), mid_block=replay, up_blocks=nn.ModuleList(up))
    deep_input = {"transformer_in": _PassOnFirst()} if getattr(unet, "transformer_in", None) is not None else {}
    deep = shallow_view(
        unet,
        conv_in=(inject := _Inject()),
        **deep_input,
        down_blocks=nn.ModuleList(deeper_down),
        up_blocks=nn.ModuleList([*deeper_up, *deeper_part, stop := _Stop()]),
        conv_norm_out=nn.Identity(),
        conv_act=nn.Identity(),
        conv_out=nn.Identity(),
    )
    return StepViews(
        full=full,
        tap=tap,
        cached=cached,
        replay=replay,
        deep=deep,
        inject=inject,
        stop=stop,
        cached_adapter=adapter_split(unet, layout, branch),
        deep_adapter=whole,
    )


@dataclass
class ViewStack:
    """The views one kind of step runs: ``top`` (a view, or a branch's ``StepViews``) and the wrappers under it."""

    top: nn.Module | StepViews
    units: dict[str, nn.Module] | None
    gates: dict[str, nn.Module] | None


def adapter_split(unet: nn.Module, layout: BranchLayout, branch: int) -> int:
    """How many T2I-Adapter residuals a cached step at ``branch`` applies: one per down block whose adapter point
    it reaches. A block with cross-attention adds its residual after its last layer, any other after the whole
    block (its downsampler included); a deep view gets the residuals from the first block it finishes."""
    whole, layers = layout.down_cut(branch)
    if layers and layers == len(unet.down_blocks[whole].resnets):
        return whole + int(getattr(unet.down_blocks[whole], "has_cross_attention", False))
    return whole


def without_deep_residuals(kwargs: dict, adapter_residuals: int) -> dict:
    """A cached step's residuals: only those of the layers it runs (and ``adapter_residuals`` T2I-Adapter ones).

    ControlNet's residual for the mid block has no effect on a cached step, where no deep layer
    runs: the stored feature already includes the residual of the full step that produced it. It is
    replaced by a zero scalar, not dropped, so the shallow skips keep theirs. Of T2I-Adapter's
    residuals (one per down block) a cached step gets those of the blocks whose end it runs.
    """
    if (
        kwargs.get("down_block_additional_residuals") is not None
        and kwargs.get("mid_block_additional_residual") is None
    ):
        raise ValueError(
            "DeepCache takes T2I-Adapter residuals as `down_intrablock_additional_residuals`, as diffusers' adapter "
            "pipelines pass them; `down_block_additional_residuals` without `mid_block_additional_residual` is "
            "diffusers' deprecated form."
        )
    kwargs = dict(kwargs)
    adapter = kwargs.get("down_intrablock_additional_residuals")
    if adapter is not None:
        kwargs["down_intrablock_additional_residuals"] = list(adapter)[:adapter_residuals]
    residual = kwargs.get("mid_block_additional_residual")
    if residual is not None:
        kwargs["mid_block_additional_residual"] = residual.new_zeros(())
    return kwargs
