"""Offline demo: baseline vs DeepCache on the embedded digits DDPM, which ships with the package.

``python -m deepcache`` downloads nothing. Both runs start from the same noise; the demo prints the
wall times, the speedup and how close the cached digits are to the uncached ones (PSNR, SSIM), and
saves a picture: baseline rows on top, DeepCache rows below, then the difference amplified.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image

from .embedded import embedded_model_path
from .evaluation.examples import describe, interleaved, side_by_side, step_progress
from .evaluation.metrics import psnr, ssim
from .pipelines.ddpm import DeepCacheDDPMPipeline

ROW = 8  # images per row of the saved picture


def main(argv: list[str] | None = None) -> None:
    defaults = DeepCacheDDPMPipeline.deepcache_defaults
    parser = argparse.ArgumentParser(prog="python -m deepcache", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    parser.add_argument("--images", type=int, default=16, help="digits per run (default 16)")
    parser.add_argument("--cache-interval", type=int, default=defaults.cache_interval, help=f"N (default {defaults.cache_interval})")
    parser.add_argument("--cache-branch-id", type=int, default=defaults.cache_branch_id, help=f"branch (default {defaults.cache_branch_id})")
    parser.add_argument("--non-uniform", action="store_true", help="non-uniform schedule (default uniform)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each, interleaved (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="deepcache_demo.png", help="picture to save (default deepcache_demo.png)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.images < 1:
        parser.error("--repeats and --images must be at least 1")

    torch.set_num_threads(1)  # one thread: stable timings on a shared machine
    print(f"Loading the embedded digits DDPM from {embedded_model_path()} (no download) ...")
    pipe = DeepCacheDDPMPipeline.from_pretrained(embedded_model_path())
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    caching = dict(cache_interval=args.cache_interval, cache_branch_id=args.cache_branch_id, uniform=not args.non_uniform)

    def generate(steps: int, **kwargs) -> np.ndarray:
        generator = torch.Generator().manual_seed(args.seed)  # the same noise for both
        return pipe(batch_size=args.images, num_inference_steps=steps, generator=generator, output_type="np", **kwargs).images

    generate(3), generate(3, **caching)  # warm-up
    with step_progress(pipe, 2 * args.repeats * args.steps, f"{args.repeats} runs each, interleaved"):
        (baseline, cached), (base, fast) = interleaved([(generate, args.steps), (partial(generate, **caching), args.steps)], args.repeats)
    reference, candidate = (torch.from_numpy(x).permute(0, 3, 1, 2) for x in (baseline, cached))
    fidelity_psnr, fidelity_ssim = psnr(reference, candidate).mean().item(), ssim(reference, candidate).mean().item()

    setting = describe(caching)
    print(f"{args.images} digits, {args.steps} DDIM steps, DeepCache {setting}, 1 thread")
    print(f"baseline  median {base:.2f} s over {args.repeats} runs")
    print(f"deepcache median {fast:.2f} s  ->  speedup {base / fast:.2f}x")
    print(f"fidelity to the baseline from the same noise: PSNR {fidelity_psnr:.1f} dB, SSIM {fidelity_ssim:.3f}")

    def rows(images: np.ndarray) -> list[list[Image.Image]]:
        pictures = [Image.fromarray((image[..., 0] * 255).round().astype(np.uint8)) for image in images]
        return [pictures[i : i + ROW] for i in range(0, len(pictures), ROW)]

    difference = np.clip(np.abs(baseline - cached) * 4, 0, 1)
    groups = [
        (rows(baseline), f"baseline, {base:.1f} s"),
        (rows(cached), f"DeepCache N={args.cache_interval} branch {args.cache_branch_id}, {fast:.1f} s ({base / fast:.2f}x)"),
        (rows(difference), f"|difference| x4, PSNR {fidelity_psnr:.1f} dB"),
    ]
    picture_rows = [row for group, _ in groups for row in group]
    labels = [label if i == 0 else "" for group, label in groups for i in range(len(group))]
    side_by_side(picture_rows, labels).save(args.output)
    print(f"saved {args.output}: baseline rows, DeepCache rows, then their difference x4")


if __name__ == "__main__":
    main()
