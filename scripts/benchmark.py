"""Benchmark DeepCache: FLOPs, FLOP-ideal and measured speedup, memory, and the original helper.

    python scripts/benchmark.py --model embedded --intervals 2 3 5 --branches 0 1 2
    python scripts/benchmark.py --model sd1.5 --resolution 256 --steps 20 --original fetch
    python scripts/benchmark.py --model sd1.5 --device cuda --dtype fp16 --intervals 3 5 --branches 0 1 \
        --schedules uniform non-uniform --json sd15.json --markdown sd15.md
    python scripts/benchmark.py --defaults-table     # FLOP-ideal speedup of each pipeline's defaults
    python scripts/benchmark.py --controlnet --model sd1.5 --branches 0 1 2 3 5   # a cached step with the ControlNet
    cut
    python scripts/benchmark.py --controlnet --model emoji --branches 0 1          # ... and timed on the emoji pipeline
    python scripts/benchmark.py --compile default --model emoji --intervals 3 --branches 0   # does caching stack with
    torch.compile?
    python scripts/benchmark.py --pipeline --model emoji --intervals 3 5 --branches 0 1     # the whole pipeline beside
    the U-Net loop
    python scripts/benchmark.py --model emoji --intervals 3 --branches 0 1 --forecasts reuse linear  # forecast vs reuse
    python scripts/benchmark.py --forecast-cost --model sd1.5 --branches 0 1 --repeats 20   # the forecast's own cost

Models: the embedded digits DDPM (trained weights) and the real SD 1.5, SDXL, SVD-XT and LDM-4-G U-Net
architectures (random weights: speed does not depend on them). Only the U-Net denoising loop is
timed; see ``deepcache.evaluation.benchmark``. ``--original`` also runs the original DeepCache 0.1.1 helper on
the same model and inputs (uniform settings) and reports the speed ratio and the largest output
difference; give its wheel, its ``deepcache.py``, or ``fetch`` to download the wheel with pip.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

import deepcache
import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache.evaluation.benchmark import SCHEDULES, benchmark, branch_flops, machine, markdown_table, settings_grid
from deepcache.evaluation.benchmark_models import MODELS
from deepcache.evaluation.examples import describe
from deepcache.evaluation.original import load_original_helper
from deepcache.evaluation.pipeline_timings import (
    compile_seconds,
    controlnet_flops,
    controlnet_pipeline_seconds,
    forecast_cost,
    pipeline_and_loop_seconds,
)
from deepcache.measurement import ideal_speedup
from deepcache.runtime import DeepCacheConfig
from deepcache.schedules import FORECAST_RULES

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


PIPELINES = {
    "sd1.5": ("StableDiffusion", "StableDiffusionImg2Img", "StableDiffusionInpaint"),
    "sdxl": ("StableDiffusionXL", "StableDiffusionXLImg2Img", "StableDiffusionXLInpaint"),
    "svd": ("StableVideoDiffusion",),
    "animatediff": ("AnimateDiff", "AnimateDiffVideoToVideo"),
    "ldm4": ("LDMClassConditional",),
    "embedded": ("DDPM", "DDIM"),
}


def defaults_table(steps: int) -> str:
    """FLOP-ideal speedup of each pipeline's ``deepcache_defaults`` on its real U-Net architecture."""
    lines = [
        f"| pipeline | U-Net | default setting | full steps of {steps} | FLOP-ideal speedup |",
        "|---|---|---|---|---|",
    ]
    for model, names in PIPELINES.items():
        classes = [getattr(deepcache, f"DeepCache{name}Pipeline") for name in names]
        flops = branch_flops(model, {cls.deepcache_defaults.cache_branch_id for cls in classes})
        for cls in classes:
            setting = cls.deepcache_defaults
            num_full = len(setting.full_steps(steps))
            speedup = ideal_speedup(*flops[setting.cache_branch_id], steps, num_full)
            lines.append(
                f"| {cls.__name__} | {model} | {describe(setting.as_kwargs())} | {num_full} | {speedup:.2f}x |"
            )
    return "\n".join(lines)


def compile_report(args: argparse.Namespace) -> str:
    """Markdown: eager and compiled loops, uncached and cached, and which speedups stack."""
    setting = DeepCacheConfig(cache_interval=args.intervals[0], cache_branch_id=args.branches[0])
    seconds = compile_seconds(
        args.model, setting, steps=args.steps, batch=args.batch, repeats=args.repeats, mode=args.compile
    )
    spec = MODELS[args.model]
    lines = [
        f"### torch.compile (inductor, mode {args.compile}, dynamic=False) and caching: {spec.description}, "
        f"{args.steps} DDIM steps, "
        f"{describe(setting.as_kwargs())}",
        "",
        f"{machine(args.device, args.threads)}; median of {args.repeats} interleaved runs; "
        f"compiling and warming up took {seconds['compile and warm-up']:.0f} s.",
        "",
        "| | uncached | cached | caching speedup |",
        "|---|---|---|---|",
    ]
    for kind in ("eager", "compiled"):
        uncached, cached = seconds[f"{kind} uncached"], seconds[f"{kind} cached"]
        lines.append(f"| {kind} | {uncached:.2f} s | {cached:.2f} s | {uncached / cached:.2f}x |")
    both = seconds["eager uncached"] / seconds["compiled cached"]
    lines += [
        "",
        f"compile alone {seconds['eager uncached'] / seconds['compiled uncached']:.2f}x, caching alone "
        f"{seconds['eager uncached'] / seconds['eager cached']:.2f}x, both {both:.2f}x.",
    ]
    return "\n".join(lines)


def controlnet_report(args: argparse.Namespace) -> str:
    """Markdown: per branch, a cached step's FLOPs with the ControlNet whole and cut; on the emoji model, timings."""
    spec = MODELS[args.model]
    rows = controlnet_flops(args.model, args.branches, batch=args.batch)
    interval = args.intervals[0]
    lines = [
        f"### ControlNet on cached steps: {spec.description}, {spec.pixels(spec.size)}, guided batch of "
        f"{2 * args.batch}",
        "",
        f"Full step: {rows[0].full / 1e9:.1f} GFLOPs (U-Net and ControlNet). Ideal speedups: interval {interval}, "
        f"uniform, {args.steps} steps.",
        "",
        "| branch | cached step / full, ControlNet whole | cached step / full, ControlNet cut | ideal speedup, whole | "
        "ideal speedup, cut |",
        "|---|---|---|---|---|",
    ]
    full_steps = len(DeepCacheConfig(cache_interval=interval).full_steps(args.steps))
    for row in rows:
        whole, cut = (ideal_speedup(1.0, share, args.steps, full_steps) for share in (row.whole_share, row.cut_share))
        lines.append(f"| {row.branch} | {row.whole_share:.3f} | {row.cut_share:.3f} | {whole:.2f}x | {cut:.2f}x |")
    if args.model == "emoji":
        lines += [
            "",
            f"Whole pipeline, ControlNet from the U-Net, 4 prompts, {args.steps} PNDM steps, guidance 5, interval "
            f"{interval}, "
            f"{machine(args.device, args.threads)}, median of {args.repeats} interleaved runs:",
            "",
            "| branch | uncached | ControlNet whole | ControlNet cut | speedup whole / cut | same images |",
            "|---|---|---|---|---|---|",
        ]
        for branch in args.branches:
            seconds = controlnet_pipeline_seconds(branch, interval, args.steps, args.repeats)
            base, whole, cut = seconds["uncached"], seconds["ControlNet whole"], seconds["ControlNet cut"]
            lines.append(
                f"| {branch} | {base:.2f} s | {whole:.2f} s | {cut:.2f} s | {base / whole:.2f}x / {base / cut:.2f}x | "
                f"{'yes' if seconds['identical'] else 'no'} |"
            )
    return "\n".join(lines)


def pipeline_report(args: argparse.Namespace) -> str:
    """Markdown: the whole pipeline call beside the bare U-Net loop, uncached and cached."""
    settings = settings_grid(args.intervals, args.branches, args.schedules)
    rows = pipeline_and_loop_seconds(args.model, settings, steps=args.steps, batch=args.batch, repeats=args.repeats)
    spec = MODELS[args.model]
    lines = [
        f"### Whole pipeline and U-Net loop: {spec.description}, {args.steps} DDIM steps, batch {args.batch}",
        "",
        f"{machine(args.device, args.threads)}; median of {args.repeats} interleaved runs; "
        'pipeline: `output_type="latent"`'
        + (", prompt embeddings computed beforehand (text encoder excluded)" if args.model == "emoji" else "")
        + ".",
        "",
        "| setting | U-Net loop | pipeline | loop speedup | pipeline speedup | pipeline over loop, per step |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = "uncached" if row["setting"] is None else describe(row["setting"].as_kwargs())
        lines.append(
            f"| {name} | {row['loop_s']:.2f} s | {row['pipeline_s']:.2f} s | {row['loop_speedup']:.2f}x | "
            f"{row['pipeline_speedup']:.2f}x | {row['overhead_ms_per_step']:.2f} ms |"
        )
    return "\n".join(lines)


def forecast_cost_report(args: argparse.Namespace) -> str:
    """Markdown: the linear forecast's arithmetic beside one cached U-Net step, per branch."""
    rows = forecast_cost(args.model, args.branches, batch=args.batch, repeats=args.repeats, device=args.device)
    lines = [
        f"### Forecast cost: {MODELS[args.model].description}, batch {args.batch}",
        "",
        f"{machine(args.device, args.threads)}; median of {args.repeats} interleaved runs.",
        "",
        "| branch | feature | cached step | linear forecast | share of the cached step |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        shape = "x".join(map(str, row["feature_shape"]))
        lines.append(
            f"| {row['branch']} | {shape} ({row['feature_mb']:.2f} MB) | {row['cached_step_ms']:.2f} ms | "
            f"{row['forecast_ms']:.3f} ms | {100 * row['share']:.2f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--model", default="embedded", choices=sorted(MODELS))
    parser.add_argument("--intervals", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--branches", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--schedules",
        nargs="+",
        default=["uniform"],
        choices=SCHEDULES,
        help="adaptive: the run-time path with uniform N's decisions, to time its overhead (default uniform)",
    )
    parser.add_argument(
        "--forecasts",
        nargs="+",
        default=["reuse"],
        choices=list(FORECAST_RULES),
        help="what cached steps are fed: reuse (DeepCache) and/or the linear forecast (default reuse)",
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--batch", type=int, default=1, help="images per call (conditional models run twice that, for guidance)"
    )
    parser.add_argument(
        "--resolution", type=int, nargs="+", help="image height [width] in pixels (default: the model's)"
    )
    parser.add_argument("--frames", type=int, help="SVD frames (default 14)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: stable timings)")
    parser.add_argument("--original", help="the DeepCache 0.1.1 wheel or helper file, or 'fetch'")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--markdown", help="append the table to this markdown file")
    parser.add_argument(
        "--defaults-table", action="store_true", help="only print the FLOP-ideal speedup of every pipeline's defaults"
    )
    parser.add_argument(
        "--compile",
        metavar="MODE",
        help="time eager and torch.compile'd (inductor, this mode, dynamic=False) U-Net "
        "loops, uncached and cached at the first --intervals and --branches",
    )
    parser.add_argument(
        "--controlnet",
        action="store_true",
        help="FLOPs of a cached step with a ControlNet run whole and cut (SD-shaped models); with --model emoji also "
        "the whole pipeline timed at the first --intervals",
    )
    parser.add_argument(
        "--forecast-cost",
        action="store_true",
        help="time the linear forecast's arithmetic against one cached U-Net step, per --branches",
    )
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="time the whole pipeline call (embedded models) beside the U-Net loop, uncached and cached",
    )
    args = parser.parse_args(argv)
    if args.defaults_table:
        print(defaults_table(args.steps))
        return
    torch.set_num_threads(args.threads)
    if args.compile:
        print(compile_report(args))
        return
    if args.forecast_cost:
        print(forecast_cost_report(args))
        return
    if args.pipeline:
        try:
            print(pipeline_report(args))
        except ValueError as error:
            sys.exit(f"error: {error}")
        return
    if args.controlnet:
        try:
            print(controlnet_report(args))
        except ValueError as error:
            sys.exit(f"error: {error}")
        return

    spec = MODELS[args.model]
    size = None
    if args.resolution:
        if len(args.resolution) > 2:
            parser.error("--resolution takes a height and at most one width")
        height, width = args.resolution[0], args.resolution[-1]
        scale = spec.vae_scale
        if height % scale or width % scale:
            parser.error(f"--resolution of {args.model} must be a multiple of {scale}")
        size = (height // scale, width // scale)
    try:
        settings = settings_grid(args.intervals, args.branches, args.schedules, args.forecasts)
        original = load_original_helper(None if args.original == "fetch" else args.original) if args.original else None
        rows = benchmark(
            args.model,
            settings,
            steps=args.steps,
            batch=args.batch,
            size=size,
            frames=args.frames,
            repeats=args.repeats,
            device=args.device,
            dtype=DTYPES[args.dtype],
            original=original,
        )
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")

    title = (
        f"### {spec.description}: {args.steps} DDIM steps, {args.dtype}, median of {args.repeats} interleaved runs\n\n"
        f"Machine: {machine(args.device, args.threads)}. Command: `python scripts/benchmark.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n"
    )
    table = markdown_table(rows)
    print(f"\n{title}\n{table}")
    if args.json:
        payload = {
            "machine": machine(args.device, args.threads),
            "arguments": vars(args),
            "rows": [dataclasses.asdict(row) for row in rows],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.markdown:
        with open(args.markdown, "a") as file:
            file.write(f"{title}\n{table}\n\n")


if __name__ == "__main__":
    main()
