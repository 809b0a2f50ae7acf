"""Offline demo: baseline vs DeepCache on a tiny random-weight Stable Diffusion pipeline.

``python -m deepcache`` downloads nothing. The weights are random, so the images are noise: the
demo shows the API, the speedup and how far cached outputs drift from the baseline, not quality.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from . import DeepCacheStableDiffusionPipeline
from .examples import psnr
from .tiny import tiny_stable_diffusion_components


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepcache", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="denoising steps (default 50)")
    parser.add_argument("--cache-interval", type=int, default=3, help="DeepCache interval N (default 3)")
    parser.add_argument("--cache-branch-id", type=int, default=0, help="cached branch, helper numbering (default 0)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="deepcache_demo.png", help="side-by-side PNG (default deepcache_demo.png)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # one thread: stable timings on a shared machine
    print("Building a tiny Stable Diffusion 1.5-shaped pipeline with random weights (no download) ...")
    pipe = DeepCacheStableDiffusionPipeline(**tiny_stable_diffusion_components(args.seed))
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a red cube on a table", "a lighthouse at dusk"]
    caching = dict(cache_interval=args.cache_interval, cache_branch_id=args.cache_branch_id)

    def generate(**kwargs):
        generator = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        images = pipe(prompts, num_inference_steps=args.steps, generator=generator, output_type="np", **kwargs).images
        return images, time.perf_counter() - start

    generate(), generate(**caching)  # warm-up
    times = {"baseline": [], "deepcache": []}
    for _ in range(args.repeats):
        baseline, seconds = generate()
        times["baseline"].append(seconds)
        cached, seconds = generate(**caching)
        times["deepcache"].append(seconds)
    base, fast = statistics.median(times["baseline"]), statistics.median(times["deepcache"])
    print(f"{args.steps} steps, batch {len(prompts)}, interval {args.cache_interval}, branch {args.cache_branch_id}")
    print(f"baseline  median {base:.3f} s over {args.repeats} runs")
    print(f"deepcache median {fast:.3f} s  ->  speedup {base / fast:.2f}x")
    print(f"fidelity: PSNR {psnr(baseline, cached):.1f} dB, max abs pixel difference {np.abs(baseline - cached).max():.4f}")

    rows = [np.concatenate(list(images), axis=1) for images in (baseline, cached)]
    grid = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(args.output)
    print(f"saved {args.output}: top row baseline, bottom row DeepCache (random weights: noise, by design)")


if __name__ == "__main__":
    main()
