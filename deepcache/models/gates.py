"""Cross-attention gating (T-GATE, Zhang et al., arXiv 2404.02747), on views like the other mechanisms.

Text conditioning enters a U-Net only through its cross-attention layers, and their outputs settle
after the first steps. After a *gate* step, each cross-attention layer's output is replayed instead
of recomputed. The gated view of a U-Net wraps every cross-attention module (a diffusers
``Attention`` with ``is_cross_attention``) so that one forward can record their outputs or replay
given ones; otherwise the module runs with its own processor, so LoRA, IP-Adapter and custom
processors keep working. The outputs go in and out as arguments: the model keeps no state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from .views import replaced_view


class _GatedAttention(nn.Module):
    """Runs a cross-attention module and records its output, or returns a given output instead."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention
        self.record = False
        self.output: torch.Tensor | None = None
        self.replay: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.replay is not None:
            return self.replay
        output = self.attention(hidden_states, *args, **kwargs)
        if self.record:
            self.output = output
        return output


def cross_attention_names(unet: nn.Module) -> tuple[str, ...]:
    """Module paths of ``unet``'s cross-attention layers, in the order the forward runs them."""
    return tuple(name for name, module in unet.named_modules() if getattr(module, "is_cross_attention", False))


def build_gate_view(unet: nn.Module) -> tuple[nn.Module, dict[str, _GatedAttention]]:
    """A view of ``unet`` with every cross-attention layer wrapped, and the wrappers by name."""
    gates = {name: _GatedAttention(unet.get_submodule(name)) for name in cross_attention_names(unet)}
    if not gates:
        raise ValueError(
            f"Cross-attention gating needs cross-attention layers, but this {type(unet).__name__} has none."
        )
    return replaced_view(unet, gates), gates


@contextlib.contextmanager
def gates_set(gates: Mapping[str, _GatedAttention], record: bool, replay: Mapping[str, torch.Tensor]):
    """Within the block the gates record (``record``) or replay ``replay``; yields a function for the records."""
    unknown = [name for name in replay if name not in gates]
    if unknown:
        raise ValueError(
            f"`cross_attention_replay` names {unknown}, which are not cross-attention layers of this U-Net: "
            f"{list(gates)}."
        )
    try:
        for name, gate in gates.items():
            gate.record, gate.replay = record, replay.get(name)
        yield lambda: {name: gate.output for name, gate in gates.items() if gate.output is not None}
    finally:  # the model keeps no tensor between calls
        for gate in gates.values():
            gate.record, gate.output, gate.replay = False, None, None
