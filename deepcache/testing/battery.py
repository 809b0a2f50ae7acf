"""The breadth battery: every diffusers pipeline whose denoiser is a U-Net, built tiny and offline, under the helper.

Each :class:`PipelineCase` builds one pipeline from random-weight components shaped like the real
ones (:mod:`deepcache.testing.zoo`) and gives its call. :func:`check_pipeline` runs it plain, then
with ``DeepCacheSDHelper`` enabled (interval 3, branch 0), then disabled, and reports what it saw:
refused at enable (and why), or how many U-Net calls ran the deep layers, each loop's full steps,
and whether disabling restored the plain output exactly. :func:`pipeline_table` is the table the
docs show, generated from these results.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import pipelines
from ..pipelines import DeepCacheSDHelper
from . import zoo
from .zoo import PipelineCase

INTERVAL = 3


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """What :func:`check_pipeline` saw. ``refused`` holds the error's message when enabling refused."""

    name: str
    refused: str | None = None
    unet_calls: int = 0
    deep_calls: int = 0  # U-Net calls that ran the mid block
    loop_full_steps: tuple[tuple[int, ...], ...] = ()  # each loop's full iterations, as the record counts them
    deep_skipped_on_cached_steps: bool = False
    each_loop_starts_full: bool = False  # as many loops as the case runs, each with its first iteration full
    restored_exactly: bool = False
    dedicated_equals_plain: bool | None = None

    @property
    def works(self) -> bool:
        return (
            self.refused is None
            and self.deep_skipped_on_cached_steps
            and self.each_loop_starts_full
            and self.restored_exactly
            and self.dedicated_equals_plain is not False
        )


def _output(result) -> np.ndarray:
    """The first field of a pipeline's output (images, frames, audio, prediction) as one array."""
    value = result[0]
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    if isinstance(value, list) and value and not isinstance(value[0], (np.ndarray, float)):
        return np.stack([np.asarray(v, dtype=np.float32) for v in value])
    return np.asarray(value, dtype=np.float32)


def _run(pipe, case: PipelineCase) -> np.ndarray:
    """One call of the case, with torch's global generator seeded too (some pipelines draw from it)."""
    torch.manual_seed(0)
    return _output(pipe(**case.call()))


def _mid_block_counter(pipe) -> tuple[list[bool], list]:
    """Per U-Net call of ``pipe``, whether its mid block ran; and the hooks' handles."""
    unet = pipe.unet
    calls: list[bool] = []
    handles = [
        unet.register_forward_pre_hook(lambda module, args: calls.append(False)),
        unet.mid_block.register_forward_pre_hook(lambda module, args: calls.__setitem__(-1, True)),
    ]
    return calls, handles


def check_pipeline(case: PipelineCase) -> PipelineResult:
    """Runs ``case`` plain, with the helper, and after disabling it (see the module)."""
    pipe = case.build()
    pipe.set_progress_bar_config(disable=True)
    plain = None if case.call is None else _run(pipe, case)
    helper = DeepCacheSDHelper(pipe)
    try:
        helper.set_params(cache_interval=INTERVAL, cache_branch_id=0)
        helper.enable()
    except (TypeError, ValueError) as error:
        restored = plain is None or np.array_equal(_run(pipe, case), plain)
        return PipelineResult(case.name, refused=str(error), restored_exactly=restored)
    calls, handles = _mid_block_counter(pipe)
    try:
        cached = _run(pipe, case)
    finally:
        for handle in handles:
            handle.remove()
        record = pipe.deepcache_record
        helper.disable()
    restored = np.array_equal(_run(pipe, case), plain)
    dedicated = None
    if case.dedicated is not None:
        ours = getattr(pipelines, case.dedicated).from_pipe(pipe)
        ours.set_progress_bar_config(disable=True)
        dedicated = np.array_equal(_run(ours, case), plain)
    ran = [i for i, deep in enumerate(calls) if deep]
    calls_per_iteration = len(calls) // record.num_iterations
    expected = [c for i in record.full_steps for c in range(i * calls_per_iteration, (i + 1) * calls_per_iteration)]
    loops = record.loops()
    return PipelineResult(
        case.name,
        unet_calls=len(calls),
        deep_calls=len(ran),
        loop_full_steps=loops,
        each_loop_starts_full=len(loops) == case.loops and all(steps[:1] == (0,) for steps in loops),
        deep_skipped_on_cached_steps=ran == expected and len(ran) < len(calls) and np.isfinite(cached).all(),
        restored_exactly=restored,
        dedicated_equals_plain=dedicated,
    )


def pipeline_table(results: list[PipelineResult], cases: dict[str, PipelineCase]) -> str:
    """The docs' table: each pipeline, whether it works with the helper (or why it is refused), and its check."""
    lines = [
        "| Pipeline | DeepCache class | With the helper | Checked on the tiny pipeline |",
        "| --- | --- | --- | --- |",
    ]
    for result in sorted(results, key=lambda r: r.name):
        case = cases[result.name]
        dedicated = f"`{case.dedicated}`" if case.dedicated else ""
        if result.refused is not None:
            status, checked = "refused at enable", result.refused.replace("|", "\\|")
        else:
            status = "works" if result.works else "**fails**"
            loops = " ".join(f"`{list(steps)}`" for steps in result.loop_full_steps)
            checked = (
                f"deep layers in {result.deep_calls} of {result.unet_calls} U-Net calls; full steps per loop {loops}"
            )
        lines.append(f"| `{case.name}` | {dedicated} | {status} | {checked} |")
    works = sum(result.works for result in results)
    refused = sum(result.refused is not None for result in results)
    lines += ["", f"**{works} of {len(results)} work; {refused} refused at enable, with the reason.**"]
    return "\n".join(lines) + "\n"


CASES: dict[str, PipelineCase] = {case.name: case for case in zoo.CASES}
