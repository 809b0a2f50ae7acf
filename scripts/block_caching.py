"""Block Caching on any pipeline: profile, derive schedules, then measure speed and fidelity.

    python scripts/block_caching.py                       # the embedded digits DDPM, offline
    python scripts/block_caching.py --units attentions --deltas 0.2 0.5 1
    python scripts/block_caching.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --prompts "a cat" "a city"
    --steps 50

The pipeline runs uncached over the profiling seeds (and prompts) to measure each unit's change
curve; each ``--deltas`` (or ``--speedups``) threshold gives a schedule, applied through
``DeepCacheSDHelper``. Baseline and schedules then run interleaved from the evaluation seed, on
``--threads`` CPU threads. Written to ``--output-dir``: ``profile.json``, ``profile.png`` (change
curves and schedules), one ``schedule-<delta>.json`` per threshold, ``samples.png`` (baseline row,
then one row per schedule) and ``results.md``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheSDHelper, profile_blocks
from deepcache.embedded import embedded_model_path
from deepcache.evaluation.examples import (
    MODEL_HELP,
    interleaved,
    load,
    side_by_side,
    step_progress,
)
from deepcache.evaluation.metrics import psnr, ssim


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--model", help=f"{MODEL_HELP} (default: the embedded digits DDPM, with DDIM)")
    parser.add_argument("--prompts", nargs="+", help="prompts for text-to-image pipelines (default: unconditional)")
    parser.add_argument("--steps", type=int, default=50, help="loop iterations (default 50)")
    parser.add_argument(
        "--units", choices=["attentions", "resnets", "all"], default="all", help="cached units (default all)"
    )
    thresholds = parser.add_mutually_exclusive_group()
    thresholds.add_argument(
        "--deltas", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2, 0.5], help="thresholds delta"
    )
    thresholds.add_argument("--speedups", type=float, nargs="+", help="target FLOP speedups instead of deltas")
    parser.add_argument(
        "--profile-seeds", type=int, nargs="+", default=[1000, 1001], help="seeds of the profiling runs"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation runs (default 0)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per run of unconditional pipelines (default 16)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timed runs of each setting (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", default="block_caching")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.repeats, args.threads) < 1:
        parser.error("--steps, --batch-size, --repeats and --threads must be at least 1")
    return args


def main(argv=None) -> list[dict]:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    pipe = load(DiffusionPipeline, args.model or embedded_model_path(), args.device)
    if args.model is None:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)  # one bar per phase instead of one per run
    call = (
        {"num_inference_steps": args.steps}
        if args.prompts
        else {"num_inference_steps": args.steps, "batch_size": args.batch_size}
    )
    profile_runs = len(args.prompts or [None]) * len(args.profile_seeds)
    with step_progress(pipe, profile_runs * args.steps, "profiling (uncached)"):
        profile = profile_blocks(pipe, args.prompts, args.profile_seeds, units=args.units, progress=False, **call)
    call.update({"prompt": args.prompts} if args.prompts else {})
    profile.save(output / "profile.json")
    deltas = args.deltas if args.speedups is None else [profile.delta_for_speedup(s) for s in args.speedups]
    schedules = [profile.schedule(delta) for delta in deltas]
    for schedule in schedules:
        schedule.save(output / f"schedule-{schedule.delta:.4g}.json")
    profile.plot(output / "profile.png", schedules)

    helper = DeepCacheSDHelper(pipe)
    helper.enable()

    def generate(schedule):
        helper.set_params(block_cache=schedule)
        generator = torch.Generator().manual_seed(args.seed)
        return torch.from_numpy(np.asarray(pipe(**call, generator=generator, output_type="np").images)).permute(
            0, 3, 1, 2
        )

    settings = [None, *schedules]  # None: the uncached baseline
    with step_progress(
        pipe, args.repeats * len(settings) * args.steps, f"timing baseline and {len(schedules)} schedules"
    ):
        outputs, seconds = interleaved([(generate, schedule) for schedule in settings], args.repeats)
    helper.disable()

    base_seconds = seconds[0]
    rows = []
    for index, schedule in enumerate(schedules, start=1):
        rows.append(
            dict(
                delta=schedule.delta,
                flop_fraction=schedule.flop_fraction,
                ideal_speedup=1 / schedule.flop_fraction,
                speedup=base_seconds / seconds[index],
                mean_recomputes=statistics.mean(len(steps) for steps in schedule.recompute.values()),
                psnr=psnr(outputs[0], outputs[index]).clamp(max=100).mean().item(),
                ssim=ssim(outputs[0], outputs[index]).mean().item(),
            )
        )
    table = results_table(args, profile, base_seconds, rows)
    (output / "results.md").write_text(table)
    print(table)
    labels = ["baseline"] + [f"delta {r['delta']:.3g}: {r['speedup']:.2f}x, {r['psnr']:.1f} dB" for r in rows]
    grid = side_by_side([_pil(outputs[index][:8]) for index in range(len(settings))], labels)
    grid.save(output / "samples.png")
    print(f"wrote {output}/: profile.json, profile.png, schedule-*.json, samples.png, results.md")
    return rows


def results_table(args, profile, base_seconds: float, rows: list[dict]) -> str:
    lines = [
        f"Block Caching, units: {args.units} ({len(profile.units)}), {profile.num_steps} steps, profiled over "
        f"{profile.runs} run(s); {args.repeats} interleaved timed runs on {args.device}"
        + (f" with {args.threads} thread(s)" if args.device == "cpu" else "")
        + f"; baseline {base_seconds:.2f} s.",
        "",
        f"| delta | computes per unit (of {profile.num_steps}) | FLOP fraction | FLOP-ideal speedup | measured speedup "
        "| PSNR vs uncached (dB) | SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['delta']:.3g} | {r['mean_recomputes']:.1f} | {r['flop_fraction']:.3f} | {r['ideal_speedup']:.2f}x | "
            f"{r['speedup']:.2f}x | {r['psnr']:.1f} | {r['ssim']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _pil(images: torch.Tensor):
    from PIL import Image

    array = (images.permute(0, 2, 3, 1).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a) for a in array]


if __name__ == "__main__":
    main()
