"""DeepCache's caching mechanism, shared by every U-Net type.

A U-Net's skip connections are numbered in the order its down path produces them: skip 0 is the
output of ``conv_in``, then one per down-block layer, then one per downsampler, block after block.
Caching at *branch* ``b`` (arXiv 2312.00858, Eq. 4) means:

* a **full step** runs the whole network and also returns the one tensor that enters the up layer
  paired with skip ``b`` (the tensor that layer concatenates with skip ``b``);
* a **cached step** runs only ``conv_in`` with the embeddings, the down layers producing skips
  ``1..b``, and the up layers consuming skips ``b..0``, feeding the stored tensor in place of
  everything deeper. The mid block and every deeper layer do not run.

Nothing here copies a diffusers forward. Both steps call the parent class's own ``forward`` on a
*view* of the model: a shallow copy whose block lists are cut to the layers that must run. A view
shares every module and weight with the model and lives for one forward call, so the model itself
holds no state between calls.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import build_unit_view, units_set
from .gates import build_gate_view, gates_set
from .views import cached_view, layer_lists, layer_view, shallow_view, swap_class


@dataclass(frozen=True)
class BranchLayout:
    """Where each skip connection of a U-Net comes from and goes to.

    Args:
        down_skips (`tuple[int, ...]`): skips produced by each down block (its layers, plus one for
            its downsampler if it has one).
        up_layers (`tuple[int, ...]`): layers of each up block; each consumes one skip, deepest first.
    """

    down_skips: tuple[int, ...]
    up_layers: tuple[int, ...]

    @classmethod
    def of(cls, unet: nn.Module) -> BranchLayout:
        for kind, blocks in (("down", unet.down_blocks), ("up", unet.up_blocks)):
            for index, block in enumerate(blocks):
                if not hasattr(block, "resnets") or hasattr(block, "skip_conv"):
                    raise ValueError(
                        f"DeepCache cannot cut {kind}_blocks[{index}] ({type(block).__name__}): only blocks "
                        "made of `resnets` (with optional `attentions`) and down/upsamplers are supported."
                    )
                layer_lists(block)  # a block whose layers cannot be cut is refused now, not at a cached step
        layout = cls(
            down_skips=tuple(len(b.resnets) + (1 if getattr(b, "downsamplers", None) else 0) for b in unet.down_blocks),
            up_layers=tuple(len(b.resnets) for b in unet.up_blocks),
        )
        if sum(layout.up_layers) != layout.num_branches:
            kinds = sorted({type(b).__name__ for b in (*unet.down_blocks, *unet.up_blocks)})
            raise ValueError(
                f"DeepCache expects every skip connection to be consumed by one up layer, but this U-Net (blocks "
                f"{', '.join(kinds)}) produces {layout.num_branches} skips and has {sum(layout.up_layers)} up layers."
            )
        return layout

    @property
    def num_branches(self) -> int:
        return 1 + sum(self.down_skips)

    def resolve(
        self,
        cache_branch_id: int | None = None,
        cache_layer_id: int | None = None,
        cache_block_id: int | None = None,
    ) -> int | None:
        """Turns either numbering into a branch index, or ``None`` when no branch is given.

        ``cache_branch_id`` is the plug-and-play helper's numbering (the skip index itself).
        ``(cache_layer_id, cache_block_id)`` is the forked pipelines' numbering: down block
        ``cache_layer_id``, layer ``cache_block_id`` inside it (``len(resnets)`` means after its
        downsampler); it equals branch ``1 + skips of earlier blocks + cache_block_id``.
        """
        fork_given = cache_layer_id is not None or cache_block_id is not None
        if cache_branch_id is not None and fork_given:
            raise ValueError(
                "Pass either `cache_branch_id` or (`cache_layer_id`, `cache_block_id`), not both; "
                f"got cache_branch_id={cache_branch_id}, cache_layer_id={cache_layer_id}, "
                f"cache_block_id={cache_block_id}."
            )
        if cache_branch_id is not None:
            _check_index("cache_branch_id", cache_branch_id, self.num_branches)
            return int(cache_branch_id)
        if not fork_given:
            return None
        if cache_layer_id is None or cache_block_id is None:
            raise ValueError(
                "`cache_layer_id` and `cache_block_id` must be given together, "
                f"but got cache_layer_id={cache_layer_id}, cache_block_id={cache_block_id}."
            )
        _check_index("cache_layer_id", cache_layer_id, len(self.down_skips))
        _check_index(
            f"cache_block_id (for cache_layer_id={cache_layer_id})", cache_block_id, self.down_skips[cache_layer_id]
        )
        return 1 + sum(self.down_skips[:cache_layer_id]) + int(cache_block_id)

    def fork_ids(self, branch: int) -> tuple[int, int]:
        """The forked pipelines' ``(cache_layer_id, cache_block_id)`` of a branch (branch 0 has none)."""
        _check_index("branch", branch, self.num_branches)
        if branch == 0:
            raise ValueError("Branch 0 (conv_in's skip) has no (cache_layer_id, cache_block_id) form.")
        skip = branch - 1
        for block, count in enumerate(self.down_skips):
            if skip < count:
                return block, skip
            skip -= count
        raise AssertionError("unreachable: branch was range-checked")

    def down_cut(self, branch: int) -> tuple[int, int]:
        """``(whole, layers)``: a cached step runs ``down_blocks[:whole]``, then ``layers`` layers of the next."""
        produced = 0  # skips produced so far beyond skip 0
        for block, count in enumerate(self.down_skips):
            if produced + count > branch:
                return block, branch - produced
            produced += count
        return len(self.down_skips), 0

    def up_cut(self, branch: int) -> tuple[int, int]:
        """``(block, layer)`` of the up layer that consumes skip ``branch``."""
        position = self.num_branches - 1 - branch  # up layers run deepest skip first
        for block, count in enumerate(self.up_layers):
            if position < count:
                return block, position
            position -= count
        raise AssertionError("unreachable: branch was range-checked")


def _check_index(name: str, value, size: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an integer in [0, {size - 1}], but got {value!r}.")
    if not 0 <= value < size:
        raise ValueError(f"`{name}` must be in [0, {size - 1}] for this U-Net, but got {value}.")


class _Replay(nn.Module):
    """Stands in for the mid block on a cached step: returns the stored deep feature.

    On an adaptive step it first asks ``refresh`` about the tensor the down path produced at the
    branch; when that says refresh, it runs ``deep`` on it (the layers deeper than the branch) and
    returns, and keeps, the new deep feature instead.
    """

    def __init__(self):
        super().__init__()
        self.features: torch.Tensor | None = None
        self.refresh: Callable[[torch.Tensor], bool] | None = None
        self.deep: Callable[[torch.Tensor], torch.Tensor] | None = None

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.refresh is not None and self.refresh(hidden_states):
            self.features = self.deep(hidden_states)
        elif self.features is None:
            raise ValueError("`cache_refresh` chose to replay, but no `replicate_prev_features` were given.")
        return self.features


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
    cached = shallow_view(
        unet, down_blocks=nn.ModuleList(down), mid_block=(replay := _Replay()), up_blocks=nn.ModuleList(up)
    )
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
class _ViewStack:
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


def _without_deep_residuals(kwargs: dict, adapter_residuals: int) -> dict:
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


class DeepCacheUNetMixin:
    """Adds DeepCache's and Block Caching's arguments to a diffusers U-Net's ``forward``; nothing else changes.

    Subclasses name the diffusers class they extend in ``_deepcache_parent`` and the output dataclass
    (the parent's, plus ``features`` and ``block_residuals`` fields) in ``_deepcache_output``.
    """

    _deepcache_parent: type
    _deepcache_output: type

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_deepcache_parent" in cls.__dict__:
            names = list(inspect.signature(cls._deepcache_parent.forward).parameters)
            cls._return_dict_position = names.index("return_dict") - 1  # without `self`

    @classmethod
    def from_unet(cls, unet: nn.Module):
        """Makes an existing diffusers U-Net cache-aware, in place: no weight is copied.

        The instance keeps its weights, hooks and device; only its class becomes ``cls`` (a subclass
        of its old class), so without caching arguments it computes exactly what it did before.
        """
        if isinstance(unet, cls):
            return unet
        if type(unet) is not cls._deepcache_parent:
            raise TypeError(f"`unet` must be a {cls._deepcache_parent.__name__}, but got {type(unet).__name__}.")
        BranchLayout.of(unet)  # fail now, not at the first cached step
        swap_class(unet, cls._deepcache_parent, cls)
        return unet

    @classmethod
    def restore(cls, unet: nn.Module) -> nn.Module:
        """Undoes :meth:`from_unet`: the instance becomes a plain diffusers U-Net again, in place."""
        if type(unet) is not cls:
            raise TypeError(f"`unet` must be a {cls.__name__}, but got {type(unet).__name__}.")
        unet.__dict__.pop("_deepcache_views", None)
        swap_class(unet, cls, cls._deepcache_parent)
        return unet

    def to_json_string(self) -> str:
        """Saved U-Nets are plain diffusers checkpoints: DeepCache changes no weight."""
        config = json.loads(super().to_json_string())
        config["_class_name"] = self._deepcache_parent.__name__
        return json.dumps(config, indent=2, sort_keys=True) + "\n"

    @property
    def deepcache_layout(self) -> BranchLayout:
        return BranchLayout.of(self)

    def forward(
        self,
        *args,
        replicate_prev_features: torch.Tensor | None = None,
        cache_layer_id: int | None = None,
        cache_block_id: int | None = None,
        cache_branch_id: int | None = None,
        block_cache_units: Sequence[str] | None = None,
        block_cache_residuals: Mapping[str, torch.Tensor] | None = None,
        cache_refresh: Callable[[torch.Tensor], bool] | None = None,
        cross_attention_record: bool = False,
        cross_attention_replay: Mapping[str, torch.Tensor] | None = None,
        **kwargs,
    ):
        """The parent's forward, plus DeepCache's and Block Caching's arguments.

        Args:
            replicate_prev_features (`torch.Tensor`, *optional*): the ``features`` returned by the last
                full step. Given, this is a cached step: only the shallow layers around the branch run.
            cache_branch_id (`int`, *optional*): branch in the plug-and-play helper's numbering (the skip
                connection index, 0 = conv_in's output).
            cache_layer_id (`int`, *optional*): branch in the forked pipelines' numbering, with
                ``cache_block_id``: the down block; ``(0, 0)`` is branch 1.
            cache_block_id (`int`, *optional*): the layer inside that down block.
            block_cache_units (`Sequence[str]`, *optional*): Block Caching units (see
                :func:`deepcache.block_units`) whose residuals this step returns.
            block_cache_residuals (`Mapping[str, torch.Tensor]`, *optional*): units that do not run at this
                step, each with the residual to add to its skip path instead (from an earlier step's output).
            cache_refresh (`Callable[[torch.Tensor], bool]`, *optional*): makes the step adaptive. The down
                path runs to the branch, then ``cache_refresh`` gets the tensor it produced there: ``True``
                runs the deeper layers (a full step, with new ``features``), ``False`` replays
                ``replicate_prev_features`` (a cached step). No layer runs twice either way.
            cross_attention_record (`bool`, defaults to `False`): return every cross-attention layer's
                output (see :func:`deepcache.models.cross_attention_names`), for cross-attention gating.
            cross_attention_replay (`Mapping[str, torch.Tensor]`, *optional*): cross-attention layers that
                do not run at this step, each with the output to use instead.

        Returns:
            `tuple` or the output dataclass: without a branch, units or gating, exactly the parent's
                output. Otherwise, with ``return_dict=False``, ``(sample, extras)``: ``extras`` maps each
                extra output's name (see :mod:`deepcache.models.outputs`) to its value: ``"features"``
                with a branch, ``"block_residuals"`` with units (those that ran or were reused: a cached
                step cuts the deep ones), ``"cross_attention_outputs"`` with ``cross_attention_record``.
                With ``return_dict=True``, the parent's output dataclass with those fields.
        """
        parent_forward = super().forward
        layout = BranchLayout.of(self)
        branch = layout.resolve(cache_branch_id, cache_layer_id, cache_block_id)
        blocks = block_cache_units is not None or block_cache_residuals is not None
        gated = cross_attention_record or cross_attention_replay is not None
        if branch is None and (replicate_prev_features is not None or cache_refresh is not None):
            raise ValueError(
                "`replicate_prev_features` and `cache_refresh` need a branch: pass `cache_branch_id` or "
                "(`cache_layer_id`, `cache_block_id`) as on the full step that produced the features."
            )
        if branch is None and not blocks and not gated:
            return parent_forward(*args, **kwargs)

        if len(args) > self._return_dict_position:
            args = list(args)
            return_dict, args[self._return_dict_position] = args[self._return_dict_position], False
        else:
            return_dict = kwargs.pop("return_dict", True)
            kwargs["return_dict"] = False
        stack = cached_view(self, (branch, blocks, gated), lambda: self._build_stack(layout, branch, blocks, gated))
        extra = {}
        with contextlib.ExitStack() as scope:
            if gated:
                gate_outputs = scope.enter_context(
                    gates_set(stack.gates, cross_attention_record, cross_attention_replay or {})
                )
            if blocks:
                unit_residuals = scope.enter_context(
                    units_set(stack.units, block_cache_units or (), block_cache_residuals or {})
                )
            if branch is not None:
                sample, extra["features"] = self._branch_forward(
                    stack.top, branch, replicate_prev_features, cache_refresh, args, kwargs
                )
            else:
                (sample,) = super(DeepCacheUNetMixin, stack.top).forward(*args, **kwargs)
            if blocks:
                extra["block_residuals"] = unit_residuals()
            if cross_attention_record:
                extra["cross_attention_outputs"] = gate_outputs()
        if not return_dict:
            return sample, extra
        return self._deepcache_output(sample=sample, **extra)

    def _build_stack(self, layout: BranchLayout, branch: int | None, blocks: bool, gated: bool) -> _ViewStack:
        """Views over views: cross-attention gates, then Block Caching units, then the branch's step views."""
        view, gates, units = self, None, None
        if gated:
            view, gates = build_gate_view(view)
        if blocks:
            view, units = build_unit_view(view)
        return _ViewStack(top=view if branch is None else build_views(view, layout, branch), units=units, gates=gates)

    def _branch_forward(self, views: StepViews, branch: int, features: torch.Tensor | None, refresh, args, kwargs):
        """A full step, a cached step, or an adaptive step (``refresh`` given) at ``branch``: ``(sample, features)``."""
        try:
            if features is None and refresh is None:
                (sample,) = super(DeepCacheUNetMixin, views.full).forward(*args, **kwargs)
                features = views.tap.features
            else:
                views.replay.features = features
                if refresh is not None:
                    views.replay.refresh, views.replay.deep = refresh, self._deep_layers(views, branch, args, kwargs)
                cached_kwargs = _without_deep_residuals(kwargs, views.cached_adapter)
                (sample,) = super(DeepCacheUNetMixin, views.cached).forward(*args, **cached_kwargs)
                features = views.replay.features
        finally:  # the model keeps no tensor between calls
            views.tap.features = views.replay.features = views.inject.features = views.stop.features = None
            views.replay.refresh = views.replay.deep = None
        return sample, features

    def _deep_layers(self, views: StepViews, branch: int, args, kwargs) -> Callable[[torch.Tensor], torch.Tensor]:
        """The layers deeper than ``branch`` as a function of the branch's tensor, for this step's inputs.

        The deep view is the parent's forward with ``conv_in`` feeding the branch's tensor; it gets
        the ControlNet residuals of the skips it produces and the mid block's own.
        """
        residuals = kwargs.get("down_block_additional_residuals")
        if residuals is not None:
            kwargs = {**kwargs, "down_block_additional_residuals": tuple(residuals)[branch:]}
        adapter = kwargs.get("down_intrablock_additional_residuals")
        if adapter is not None:  # the adapter residuals of the down blocks the deep layers finish
            kwargs = {**kwargs, "down_intrablock_additional_residuals": list(adapter)[views.deep_adapter :]}

        def deep(hidden_states: torch.Tensor) -> torch.Tensor:
            views.inject.features = hidden_states
            super(DeepCacheUNetMixin, views.deep).forward(*args, **kwargs)
            return views.stop.features

        return deep
