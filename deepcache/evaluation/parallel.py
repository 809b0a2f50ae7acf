"""Many samples, data-parallel: under ``accelerate launch`` each process takes its share of the seeds.

The seeds are cut into fixed batches first and every batch draws each image's noise from that
image's own seed, so a batch computes the same numbers whichever process runs it: the gathered
result equals a single-process run for the same seeds.
"""

from __future__ import annotations

import torch
from accelerate import PartialState
from accelerate.utils import gather_object


def process_state() -> PartialState:
    """This process's place among ``accelerate launch``'s processes; CPU ones when there is no GPU."""
    return PartialState(cpu=not torch.cuda.is_available())


def end_processes() -> None:
    """Waits for every process, then closes the process group. A process that exits while another still
    uses the group can abort in gloo's threads ("terminate called without an active exception")."""
    state = process_state()
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()


def sample_images(
    pipe,
    seeds: list[int],
    batch_size: int,
    prompts: list[str] | None = None,
    records: list | None = None,
    **call_kwargs,
) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] for ``seeds``, in seed order: from an unconditional pipeline, or
    with ``prompts`` (one per seed) from a text-to-image one.

    Every process returns the full gathered result. ``call_kwargs`` go to the pipeline call
    (``num_inference_steps``, caching arguments, ...). A ``records`` list receives each batch's
    ``pipe.deepcache_record`` (the full steps a cached call ran), gathered, in batch order.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, but got {batch_size}.")
    if prompts is not None and len(prompts) != len(seeds):
        raise ValueError(f"`prompts` needs one prompt per seed, but got {len(prompts)} for {len(seeds)} seeds.")
    state = process_state()
    batches = [seeds[start : start + batch_size] for start in range(0, len(seeds), batch_size)]
    mine = []
    for index in range(state.process_index, len(batches), state.num_processes):
        generators = [torch.Generator().manual_seed(seed) for seed in batches[index]]
        start = index * batch_size
        inputs = (
            dict(batch_size=len(generators))
            if prompts is None
            else dict(prompt=prompts[start : start + len(generators)])
        )
        images = pipe(generator=generators, output_type="np", **inputs, **call_kwargs).images
        mine.append(
            (index, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), getattr(pipe, "deepcache_record", None))
        )
    gathered = sorted(gather_object(mine), key=lambda item: item[0])
    if records is not None:
        records.extend(record for _, _, record in gathered)
    return torch.cat([images for _, images, _ in gathered]) if gathered else torch.empty(0)
