"""Where a U-Net's skip connections come from and go to, and the branch numberings (helper's and the fork's)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .views import layer_lists


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
