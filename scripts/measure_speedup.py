"""FLOPs of cached vs full steps on real SD 1.5 / SDXL configs, and CPU wall time vs the FLOP ideal.

    python scripts/measure_speedup.py [--steps 50] [--repeats 3]

Part 1 counts FLOPs on the meta device (no weights, attention included), per branch and for
each SD / SDXL pipeline's default setting. Part 2 times a small
SD 1.5-shaped U-Net on one CPU thread: 50 all-full steps against 50 uniformly cached ones,
interleaved, median of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import deepcache
from deepcache import DeepCacheUNet2DConditionModel, uniform_full_steps
from deepcache.examples import describe
from deepcache.flops import SD15_CONFIG, SDXL_CONFIG, ideal_speedup, meta_unet_and_inputs, step_flops

SD_PIPELINES = (
    deepcache.DeepCacheStableDiffusionPipeline,
    deepcache.DeepCacheStableDiffusionImg2ImgPipeline,
    deepcache.DeepCacheStableDiffusionInpaintPipeline,
)
SDXL_PIPELINES = (
    deepcache.DeepCacheStableDiffusionXLPipeline,
    deepcache.DeepCacheStableDiffusionXLImg2ImgPipeline,
    deepcache.DeepCacheStableDiffusionXLInpaintPipeline,
)
SMALL_CONFIG = dict(SD15_CONFIG, sample_size=32, block_out_channels=(32, 64, 128, 128), cross_attention_dim=64)


def flop_table() -> None:
    print("| model | branch | full step GFLOPs | cached step GFLOPs | cached / full |")
    print("|---|---|---|---|---|")
    for name, config in (("SD 1.5, 512 px", SD15_CONFIG), ("SDXL, 1024 px", SDXL_CONFIG)):
        unet, args, kwargs = meta_unet_and_inputs(config)
        for branch in range(4):
            full, cached = step_flops(unet, args, kwargs, branch)
            print(f"| {name} | {branch} | {full / 1e9:.1f} | {cached / 1e9:.1f} | {100 * cached / full:.1f} % |")


def run_steps(unet, args, steps: int, full_steps: set[int], branch: int) -> float:
    start, features = time.perf_counter(), None
    for step in range(steps):
        replicate = None if step in full_steps else features
        _, features = unet(*args, cache_branch_id=branch, replicate_prev_features=replicate, return_dict=False)
    return time.perf_counter() - start


def wall_table(steps: int, repeats: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = DeepCacheUNet2DConditionModel(**SMALL_CONFIG).eval()
    size = SMALL_CONFIG["sample_size"]
    args = (torch.randn(2, 4, size, size), torch.tensor(500), torch.randn(2, 77, SMALL_CONFIG["cross_attention_dim"]))
    meta_unet, meta_args, meta_kwargs = meta_unet_and_inputs(SMALL_CONFIG)
    cases = [(interval, branch) for interval in (3, 5) for branch in (0, 1)]
    times = {case: [] for case in [None, *cases]}
    with torch.no_grad():
        run_steps(unet, args, 3, {0}, 0)  # warm-up
        for _ in range(repeats):  # interleaved, so drifts in machine speed hit all cases alike
            times[None].append(run_steps(unet, args, steps, set(range(steps)), 0))
            for interval, branch in cases:
                times[(interval, branch)].append(run_steps(unet, args, steps, set(uniform_full_steps(steps, interval)), branch))
        baseline = statistics.median(times[None])
        print(f"\nSmall SD 1.5-shaped U-Net {SMALL_CONFIG['block_out_channels']}, latent {size}x{size}, batch 2, {steps} steps, 1 thread")
        print(f"baseline: median {baseline:.2f} s over {repeats} interleaved runs\n")
        print("| interval | branch | median s | measured speedup | FLOP-ideal speedup | measured / ideal |")
        print("|---|---|---|---|---|---|")
        for interval, branch in cases:
            full, cached = step_flops(meta_unet, meta_args, meta_kwargs, branch)
            ideal = ideal_speedup(full, cached, steps, len(uniform_full_steps(steps, interval)))
            median = statistics.median(times[(interval, branch)])
            measured = baseline / median
            print(f"| {interval} | {branch} | {median:.2f} | {measured:.2f}x | {ideal:.2f}x | {measured / ideal:.2f} |")


def defaults_table(steps: int) -> None:
    """FLOP-ideal speedup of each SD / SDXL pipeline's ``deepcache_defaults`` on the real U-Net."""
    print(f"| pipeline | default setting | full steps of {steps} | ideal speedup |")
    print("|---|---|---|---|")
    for config, classes in ((SD15_CONFIG, SD_PIPELINES), (SDXL_CONFIG, SDXL_PIPELINES)):
        unet, args, kwargs = meta_unet_and_inputs(config)
        for cls in classes:
            setting = cls.deepcache_defaults
            full, cached = step_flops(unet, args, kwargs, setting.cache_branch_id)
            num_full = len(setting.full_steps(steps))
            speedup = ideal_speedup(full, cached, steps, num_full)
            print(f"| {cls.__name__} | {describe(setting.as_kwargs())} | {num_full} | {speedup:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    flop_table()
    defaults_table(args.steps)
    wall_table(args.steps, args.repeats)


if __name__ == "__main__":
    main()
