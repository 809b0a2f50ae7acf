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

import torch
from torch import nn

from .blocks import build_unit_view, units_set
from .gates import build_gate_view, gates_set
from .layout import BranchLayout
from .outputs import given_features, tuple_output
from .step_views import StepViews, ViewStack, build_views, without_deep_residuals
from .views import VIEWS_ATTRIBUTE, cached_view, swap_class


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
        unet.__dict__.pop(VIEWS_ATTRIBUTE, None)
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
        replicate_prev_features: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
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
                full step (or the ``extras`` dict they came in). Given, this is a cached step: only the
                shallow layers around the branch run. Its shape is checked against this step's input.
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
                output. With only a branch and ``return_dict=False``, ``(sample, features)`` as the
                DeepCache fork returns them (feed ``features`` to the next cached step). With other extras,
                ``(sample, extras)``: ``extras`` maps each extra output's name (see
                :mod:`deepcache.models.outputs`) to its value: ``"features"`` with a branch,
                ``"block_residuals"`` with units (those that ran or were reused: a cached step cuts the
                deep ones), ``"cross_attention_outputs"`` with ``cross_attention_record``. With
                ``return_dict=True``, the parent's output dataclass with those fields.
        """
        parent_forward = super().forward
        replicate_prev_features = given_features(replicate_prev_features)
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
            return tuple_output(sample, extra)
        return self._deepcache_output(sample=sample, **extra)

    def _build_stack(self, layout: BranchLayout, branch: int | None, blocks: bool, gated: bool) -> ViewStack:
        """Views over views: cross-attention gates, then Block Caching units, then the branch's step views."""
        view, gates, units = self, None, None
        if gated:
            view, gates = build_gate_view(view)
        if blocks:
            view, units = build_unit_view(view)
        return ViewStack(top=view if branch is None else build_views(view, layout, branch), units=units, gates=gates)

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
                cached_kwargs = without_deep_residuals(kwargs, views.cached_adapter)
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
