"""Offline demo: baseline vs DeepCache on the embedded emoji text-to-image model, which ships with the package.

``python -m deepcache`` downloads nothing. It generates a few prompts with classifier-free guidance,
the baseline and then DeepCache from the same seeds, prints the wall times, the speedup and how close
the cached images are to the uncached ones (PSNR, SSIM), and saves a captioned grid: one column per
prompt, the baseline row, the DeepCache row, then their difference amplified.
"""

from __future__ import annotations

import argparse
import warnings
from functools import partial

import numpy as np
import torch
from PIL import Image

from .embedded.text_to_image import embedded_text_to_image_path
from .evaluation.examples import captioned_grid, describe, interleaved, step_progress
from .evaluation.metrics import psnr, ssim
from .pipelines.stable_diffusion import DeepCacheStableDiffusionPipeline
from .runtime import FewStepsWarning

DEMO_GUIDANCE = 5.0
PROMPTS = (
    "red apple",
    "rocket",
    "grinning face with big eyes",
    "flag: Japan",
    "red heart",
    "dog face",
    "automobile",
    "snowman",
)


def main(argv: list[str] | None = None) -> None:
    defaults = DeepCacheStableDiffusionPipeline.deepcache_defaults
    parser = argparse.ArgumentParser(prog="python -m deepcache", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompt", action="append", help=f"a prompt; repeat for several (default: {len(PROMPTS)} emoji names)"
    )
    parser.add_argument(
        "--steps", type=int, default=50, help="PNDM steps, Stable Diffusion's default sampler (default 50)"
    )
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=DEMO_GUIDANCE,
        help=f"classifier-free guidance (default {DEMO_GUIDANCE})",
    )
    parser.add_argument(
        "--cache-interval", type=int, default=defaults.cache_interval, help=f"N (default {defaults.cache_interval})"
    )
    parser.add_argument(
        "--cache-branch-id",
        type=int,
        default=defaults.cache_branch_id,
        help=f"branch (default {defaults.cache_branch_id})",
    )
    parser.add_argument(
        "--uniform",
        action=argparse.BooleanOptionalAction,
        default=defaults.uniform,
        help=f"uniform schedule, or --no-uniform (default {'uniform' if defaults.uniform else 'non-uniform'})",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each, interleaved (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="deepcache_demo.png", help="picture to save (default deepcache_demo.png)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.steps < 1:
        parser.error("--repeats and --steps must be at least 1")
    prompts = args.prompt or list(PROMPTS)

    torch.set_num_threads(1)  # one thread: stable timings on a shared machine
    print(f"Loading the embedded emoji text-to-image model from {embedded_text_to_image_path()} (no download) ...")
    pipe = DeepCacheStableDiffusionPipeline.from_pretrained(embedded_text_to_image_path())
    pipe.set_progress_bar_config(disable=True)
    caching = dict(cache_interval=args.cache_interval, cache_branch_id=args.cache_branch_id, uniform=args.uniform)
    if not args.uniform:
        caching["pow"] = defaults.pow

    def generate(steps: int, **kwargs) -> np.ndarray:
        generator = [
            torch.Generator().manual_seed(args.seed + i) for i in range(len(prompts))
        ]  # the same noise for both
        return pipe(
            prompts,
            num_inference_steps=steps,
            guidance_scale=args.guidance_scale,
            generator=generator,
            output_type="np",
            **kwargs,
        ).images

    with warnings.catch_warnings():  # a 2-step warm-up is few steps on purpose: not the user's concern
        warnings.simplefilter("ignore", FewStepsWarning)
        generate(2), generate(2, **caching)
    pipe.scheduler.set_timesteps(args.steps)  # PLMS calls the U-Net once more than it has steps
    with step_progress(
        pipe, 2 * args.repeats * len(pipe.scheduler.timesteps), f"{args.repeats} runs each, interleaved"
    ):
        (baseline, cached), (base, fast) = interleaved(
            [(generate, args.steps), (partial(generate, **caching), args.steps)], args.repeats
        )
    reference, candidate = (torch.from_numpy(x).permute(0, 3, 1, 2) for x in (baseline, cached))
    fidelity_psnr, fidelity_ssim = psnr(reference, candidate).mean().item(), ssim(reference, candidate).mean().item()

    print(
        f"{len(prompts)} prompts, {args.steps} PNDM steps, guidance {args.guidance_scale:g}, DeepCache "
        f"{describe(caching)}, 1 thread"
    )
    print(f"baseline  median {base:.2f} s over {args.repeats} runs")
    print(f"deepcache median {fast:.2f} s  ->  speedup {base / fast:.2f}x")
    print(f"fidelity to the baseline from the same seeds: PSNR {fidelity_psnr:.1f} dB, SSIM {fidelity_ssim:.3f}")

    def pictures(images: np.ndarray) -> list[Image.Image]:
        return [Image.fromarray((image * 255).round().astype(np.uint8)) for image in images]

    difference = np.clip(np.abs(baseline - cached) * 4, 0, 1)
    rows = [
        (pictures(baseline), f"baseline, {base:.1f} s"),
        (pictures(cached), f"DeepCache, {fast:.1f} s ({base / fast:.2f}x)"),
        (pictures(difference), f"|difference| x4, PSNR {fidelity_psnr:.1f} dB"),
    ]
    captioned_grid([row for row, _ in rows], [label for _, label in rows], prompts).save(args.output)
    print(f"saved {args.output}: a column per prompt; baseline, DeepCache, then their difference x4")


if __name__ == "__main__":
    main()
