"""Reproduce the papers' claims at small scale, on the embedded emoji text-to-image model or digits DDPM.

    python scripts/reproduce.py                                   # emoji model, one process
    accelerate launch --multi_gpu --num_processes 2 scripts/reproduce.py   # two processes (CPU or GPUs)
    python scripts/reproduce.py --embedded digits                 # the DDPM tables on the digits model

Every setting samples the same seeds (``--groups`` groups of ``--samples``; the groups give the error
bars; with the emoji model each seed has its prompt, a training caption) with ``--steps`` steps,
data-parallel across processes:
- quality vs interval N (uniform and non-uniform, DeepCache's Tables 2 and 5), DDIM;
- each solver of ``--solvers`` with fewer steps at the FLOPs of each uniform N, against DeepCache
  with that solver (the paper's equal-throughput claim; its SD table uses PLMS);
- a branch sweep at N = 5 (the paper's Figure 6 / Table 6);
- Block Caching (arXiv 2312.03209) at several thresholds delta, for attention units only (the Block
  Caching paper's choice) and for all units, with schedules from a profile over separate seeds;
- at the full-step budget of each uniform N: a calibrated schedule (``calibrate_schedule`` over
  separate seeds) and adaptive caching (``cache_threshold``, set on separate seeds for that budget);
- compositions at N = ``--compose-interval``: DeepCache with cross-attention gating (T-GATE) and with
  Block Caching, each beside its parts alone.
Quality: PSNR and SSIM of each sample against the uncached sample of the same solver from the same
noise (fidelity), and Frechet distance and KID on the embedded classifier's features against one half
of the real images; the other half gives the real-vs-real floor. With the emoji model also prompt
following: the classifier's CLDR-group accuracy for the prompt and the contrastive scorer's CLIP-score
analogue. The emoji model's real images are rendered with Debian's fonts-noto-color-emoji. Process 0
writes ``results.json``, ``tables.md`` and ``quality_vs_speedup.png`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import (
    DeepCacheConfig,
    DeepCacheDDPMPipeline,
    DeepCacheStableDiffusionPipeline,
    calibrate_schedule,
    profile_blocks,
)
from deepcache.embedded import embedded_model_path
from deepcache.embedded.emoji import shuffled_training_captions as evaluation_prompts
from deepcache.embedded.text_to_image import embedded_text_to_image_path
from deepcache.evaluation.parallel import end_processes, process_state, sample_images
from deepcache.evaluation.reproduction import real_images, report
from deepcache.evaluation.solvers import SOLVERS
from deepcache.measurement import ideal_speedup, module_flops, step_flops
from deepcache.models import cache_aware_class

EMBEDDED = {  # what each embedded model is run with unless told otherwise
    "emoji": dict(branch=1, sweep_branches=[0, 1, 2, 4, 7], solvers=["ddim", "dpm++", "plms"]),
    "digits": dict(branch=2, sweep_branches=[0, 1, 2, 4, 8], solvers=["ddim"]),
}


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument(
        "--embedded",
        choices=list(EMBEDDED),
        default="emoji",
        help="emoji: the text-to-image model (default); digits: the DDPM",
    )
    parser.add_argument("--model", help="a pipeline folder of the same kind (default: the embedded model's)")
    parser.add_argument("--steps", type=int, default=50, help="steps of the baselines (default 50)")
    parser.add_argument("--guidance-scale", type=float, default=5.0, help="emoji: classifier-free guidance (default 5)")
    parser.add_argument(
        "--other-guidance",
        type=float,
        nargs="*",
        default=[1.0, 3.0, 7.5],
        help="emoji: uncached runs at these guidance scales too (1: guidance off; default 1 3 7.5)",
    )
    parser.add_argument(
        "--solvers",
        nargs="+",
        choices=list(SOLVERS),
        help="samplers of the fewer-steps comparison "
        "(default: ddim dpm++ plms for emoji, ddim for digits); the first one runs every other table",
    )
    parser.add_argument("--samples", type=int, default=100, help="samples per seed group (default 100)")
    parser.add_argument("--groups", type=int, default=3, help="seed groups, for error bars (default 3)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--intervals", type=int, nargs="+", default=[2, 3, 5, 10])
    parser.add_argument("--nonuniform-intervals", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument(
        "--branch",
        type=int,
        help="cached branch of the interval runs (default: the paper's, 1 for emoji, 2 for digits)",
    )
    parser.add_argument("--sweep-interval", type=int, default=5)
    parser.add_argument(
        "--sweep-branches", type=int, nargs="+", help="default 0 1 2 4 7 for emoji, 0 1 2 4 8 for digits"
    )
    parser.add_argument(
        "--block-units",
        nargs="*",
        choices=["attentions", "resnets", "all"],
        default=["attentions", "all"],
        help="unit kinds of the Block Caching runs (default attentions all; none: no Block Caching)",
    )
    parser.add_argument(
        "--block-deltas", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2], help="Block Caching thresholds"
    )
    parser.add_argument(
        "--profile-runs", type=int, default=2, help="profiling runs of --batch-size samples (default 2)"
    )
    parser.add_argument(
        "--calibrated-intervals",
        type=int,
        nargs="*",
        default=[2, 3, 5, 10],
        help="calibrated schedules with the full steps of these uniform N (none: no calibration)",
    )
    parser.add_argument(
        "--adaptive-intervals",
        type=int,
        nargs="*",
        default=[2, 3, 5, 10],
        help="adaptive caching with these uniform N's full steps on the profiling seeds (longest run 2N)",
    )
    parser.add_argument("--compose-interval", type=int, default=5, help="N of the composition runs")
    parser.add_argument(
        "--gate-steps",
        type=int,
        nargs="*",
        default=[20],
        help="emoji: T-GATE gate steps, alone and with DeepCache (none: no gating runs)",
    )
    parser.add_argument(
        "--compose-deltas",
        type=float,
        nargs="*",
        default=[0.1],
        help="Block Caching thresholds composed with DeepCache, per unit kind of --block-units",
    )
    parser.add_argument("--kid-subset", type=int, default=100, help="KID subset size (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1)")
    parser.add_argument("--output-dir", help="default docs/results/<embedded model>")
    parser.add_argument(
        "--reuse-samples",
        action="store_true",
        help="reuse the samples.pt of an earlier run for the settings it has; sample only the others",
    )
    args = parser.parse_args(argv)
    if min(args.steps, args.samples, args.groups, args.batch_size) < 1:
        parser.error("--steps, --samples, --groups and --batch-size must be at least 1")
    if args.kid_subset > args.samples:
        parser.error(f"--kid-subset ({args.kid_subset}) cannot exceed --samples ({args.samples})")
    args.output_dir = args.output_dir or f"docs/results/{args.embedded}"
    for name, default in EMBEDDED[args.embedded].items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def settings(args, flops: dict[int, tuple[int, int]], profiles: dict, calibration=None, thresholds=None) -> list[dict]:
    """Every run: name, group, call arguments and FLOP-ideal speedup over the baseline (``None``
    where FLOPs are counted on a real call instead: adaptive runs from their records, compositions)."""
    main_solver = args.solvers[0]

    def cached(interval, branch, uniform, group, solver=main_solver):
        setting = DeepCacheConfig(cache_interval=interval, cache_branch_id=branch, uniform=uniform)
        num_full = len(setting.full_steps(args.steps))
        schedule = "uniform" if uniform else "non-uniform"
        prefix = "" if solver == main_solver else f"{SOLVERS[solver].label} "
        return dict(
            name=f"{prefix}N={interval} b{branch} {schedule}",
            group=group,
            solver=solver,
            interval=interval,
            branch=branch,
            schedule=schedule,
            call=dict(num_inference_steps=args.steps, **setting.as_kwargs()),
            ideal=ideal_speedup(*flops[branch], args.steps, num_full),
        )

    def plain(solver, steps, group, **extra):
        return dict(
            name=f"{SOLVERS[solver].label}-{steps}",
            group=group,
            solver=solver,
            interval=1,
            branch=None,
            schedule="-",
            call=dict(num_inference_steps=steps),
            ideal=args.steps / steps,
            **extra,
        )

    def budgeted(interval, schedule, **caching):  # the full-step budget of uniform N, placed another way
        num_full = len(DeepCacheConfig(cache_interval=interval).full_steps(args.steps))
        ideal = None if "cache_threshold" in caching else ideal_speedup(*flops[args.branch], args.steps, num_full)
        return dict(
            name=f"N={interval} b{args.branch} {schedule}",
            group="interval",
            solver=main_solver,
            interval=interval,
            branch=args.branch,
            schedule=schedule,
            ideal=ideal,
            threshold=caching.get("cache_threshold"),
            call=dict(num_inference_steps=args.steps, cache_branch_id=args.branch, **caching),
        )

    runs = [plain(main_solver, args.steps, "baseline")]
    if args.embedded == "emoji":
        for scale in args.other_guidance:
            run = plain(main_solver, args.steps, "guidance")
            runs.append(
                dict(
                    run,
                    name=f"{run['name']} guidance {scale:g}",
                    guidance=scale,
                    call=dict(run["call"], guidance_scale=scale),
                )
            )
    runs += [cached(n, args.branch, True, "interval") for n in args.intervals]
    runs += [cached(n, args.branch, False, "interval") for n in args.nonuniform_intervals]
    runs += [budgeted(n, "calibrated", cache_full_steps=calibration.schedule(n)) for n in args.calibrated_intervals]
    runs += [
        budgeted(n, "adaptive", cache_threshold=thresholds[n], cache_interval=2 * n) for n in args.adaptive_intervals
    ]
    for solver in args.solvers:
        if solver != main_solver:
            runs.append(plain(solver, args.steps, "baseline"))
            runs += [cached(n, args.branch, True, "solver", solver) for n in args.intervals]
        for run in [
            r
            for r in runs
            if r["solver"] == solver and r["schedule"] == "uniform" and r["group"] in ("interval", "solver")
        ]:
            runs.append(plain(solver, max(1, round(args.steps / run["ideal"])), "fewer steps", matches=run["name"]))
    done = {r["name"] for r in runs}
    runs += [
        r
        for b in args.sweep_branches
        if (r := cached(args.sweep_interval, b, True, "branch sweep"))["name"] not in done
    ]
    for units, profile in profiles.items():
        for delta in args.block_deltas:
            schedule = profile.schedule(delta)
            runs.append(
                dict(
                    name=f"Block Caching {units} delta={delta:g}",
                    group="block caching",
                    solver=main_solver,
                    units=units,
                    delta=delta,
                    interval=1,
                    branch=None,
                    schedule="-",
                    call=dict(num_inference_steps=args.steps, block_cache=schedule),
                    ideal=1 / schedule.flop_fraction,
                )
            )
    deepcache = dict(cache_interval=args.compose_interval, cache_branch_id=args.branch)
    for gate in args.gate_steps if args.embedded == "emoji" else []:
        for caching, prefix in (({}, ""), (deepcache, f"N={args.compose_interval} b{args.branch} + ")):
            runs.append(
                dict(
                    name=f"{prefix}T-GATE gate {gate}",
                    group="composition",
                    solver=main_solver,
                    interval=args.compose_interval,
                    branch=args.branch,
                    schedule="-",
                    ideal=None,
                    call=dict(num_inference_steps=args.steps, gate_step=gate, **caching),
                )
            )
    for units, profile in profiles.items():
        for delta in args.compose_deltas:
            runs.append(
                dict(
                    name=f"N={args.compose_interval} b{args.branch} + Block Caching {units} delta={delta:g}",
                    group="composition",
                    solver=main_solver,
                    interval=args.compose_interval,
                    branch=args.branch,
                    schedule="-",
                    ideal=None,
                    call=dict(num_inference_steps=args.steps, block_cache=profile.schedule(delta), **deepcache),
                )
            )
    return runs


def adaptive_threshold(pipe, call, steps: int, interval: int, branch: int) -> float:
    """The ``cache_threshold`` at which ``call()`` runs as many full steps as uniform ``interval``, with
    runs of at most ``2 * interval`` (bisection over the threshold's logarithm; the closest found)."""
    target = len(DeepCacheConfig(cache_interval=interval).full_steps(steps))
    low, high, best = 1e-4, 1e2, None
    for _ in range(16):
        threshold = math.sqrt(low * high)
        pipe(
            **call(),
            num_inference_steps=steps,
            cache_threshold=threshold,
            cache_interval=2 * interval,
            cache_branch_id=branch,
            output_type="np",
        )
        count = len(pipe.deepcache_record.full_steps)
        if best is None or abs(count - target) < abs(best[1] - target):
            best = (threshold, count)
        if count == target:
            break
        low, high = (threshold, high) if count > target else (low, threshold)
    return best[0]


def main(argv: list[str] | None = None) -> dict | None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    state = process_state()
    emoji = args.embedded == "emoji"
    pipeline_class = DeepCacheStableDiffusionPipeline if emoji else DeepCacheDDPMPipeline
    pipe = pipeline_class.from_pretrained(
        args.model or (embedded_text_to_image_path() if emoji else embedded_model_path())
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.to(state.device)
    scheduler_config = pipe.scheduler.config
    real, real_captions = real_images(args.embedded)  # before any sampling: without the data it stops here
    seeds = list(range(args.samples * args.groups))
    prompts = evaluation_prompts(len(seeds)) if emoji else None

    def use_solver(solver: str) -> None:
        pipe.scheduler = SOLVERS[solver].scheduler(scheduler_config)

    use_solver(args.solvers[0])
    extra_call = dict(guidance_scale=args.guidance_scale) if emoji else {}
    config = pipe.unet.config
    with torch.device("meta"):
        meta_unet = cache_aware_class(pipe.unet).from_config(config)
        batch = 2 if emoji else 1  # classifier-free guidance runs the conditional and unconditional halves
        meta_args = (torch.empty(batch, config.in_channels, config.sample_size, config.sample_size), torch.tensor(500))
        meta_kwargs = (
            dict(encoder_hidden_states=torch.empty(batch, pipe.tokenizer.model_max_length, config.cross_attention_dim))
            if emoji
            else {}
        )
    branches = {args.branch, *args.sweep_branches}
    flops = {b: step_flops(meta_unet, meta_args, meta_kwargs, b) for b in sorted(branches)}
    first = 10**6  # profiling and calibration seeds: not among the evaluation seeds
    if emoji:  # each profiling run: a batch of other seeds, with training captions
        profile_prompts = evaluation_prompts(args.profile_runs * args.batch_size, offset=first)
        calls = [
            dict(
                prompt=profile_prompts[r * args.batch_size : (r + 1) * args.batch_size],
                generator=[
                    torch.Generator().manual_seed(first + r * args.batch_size + i) for i in range(args.batch_size)
                ],
            )
            for r in range(args.profile_runs)
        ]
        profile_runs = dict(calls=calls, **extra_call)
    else:
        profile_runs = dict(seeds=range(10**6, 10**6 + args.profile_runs), batch_size=args.batch_size)
    profiles = {
        units: profile_blocks(
            pipe, units=units, num_inference_steps=args.steps, progress=state.is_main_process, **profile_runs
        )
        for units in dict.fromkeys(args.block_units)
    }

    def tuning_call(
        count: int = args.batch_size,
    ) -> dict:  # the first profiling seeds, fresh generators (a call consumes them)
        generators = (
            [torch.Generator().manual_seed(first + i) for i in range(count)]
            if emoji
            else torch.Generator().manual_seed(10**6)
        )
        inputs = dict(prompt=evaluation_prompts(count, offset=first)) if emoji else dict(batch_size=count)
        return dict(generator=generators, **inputs, **extra_call)

    calibration = thresholds = None
    if args.calibrated_intervals:
        calibration = calibrate_schedule(
            pipe,
            calls=[tuning_call()],
            branch=args.branch,
            num_inference_steps=args.steps,
            max_interval=2 * max(args.calibrated_intervals),
            progress=state.is_main_process,
        )
    if args.adaptive_intervals:
        thresholds = {
            n: adaptive_threshold(pipe, tuning_call, args.steps, n, args.branch) for n in args.adaptive_intervals
        }
    runs = settings(args, flops, profiles, calibration, thresholds)
    baseline_flops = None
    for run in runs:  # settings whose steps differ in cost: their U-Net FLOPs counted over one sample's call
        if run["ideal"] is None and "cache_threshold" not in run["call"]:
            use_solver(run["solver"])
            count = lambda **call: module_flops(pipe.unet, pipe, **tuning_call(1), **call, output_type="np")  # noqa: E731
            baseline_flops = baseline_flops or count(num_inference_steps=args.steps)
            run["ideal"] = baseline_flops / count(**run["call"])

    saved = Path(args.output_dir) / "samples.pt"
    quantized, seconds, full_counts = torch.load(saved) if args.reuse_samples and saved.exists() else ({}, {}, {})
    missing = [run for run in runs if run["name"] not in quantized]
    for index, run in enumerate(missing):
        use_solver(run["solver"])
        start = time.perf_counter()
        records = []
        images = sample_images(
            pipe, seeds, args.batch_size, prompts=prompts, records=records, **{**extra_call, **run["call"]}
        )
        quantized[run["name"]] = (images * 255).round().to(torch.uint8)  # 8-bit, as saved images are
        seconds[run["name"]] = time.perf_counter() - start
        full_counts[run["name"]] = [len(record.full_steps) for record in records if record is not None]
        if state.is_main_process:
            print(f"[{index + 1}/{len(missing)}] {run['name']}: {seconds[run['name']]:.1f} s", flush=True)
    if missing and state.is_main_process:  # kept, so the scores can be recomputed (--reuse-samples)
        saved.parent.mkdir(parents=True, exist_ok=True)
        torch.save((quantized, seconds, full_counts), saved)
    if not state.is_main_process:
        return None
    for units, profile in profiles.items():
        profile.save(Path(args.output_dir) / f"block_profile_{units}.json")
    samples = {name: images.float() / 255 for name, images in quantized.items()}
    for run in runs:  # adaptive runs: the FLOPs of the full steps each batch chose
        if run["ideal"] is None:
            full, cached = flops[run["branch"]]
            counts = full_counts[run["name"]]
            run["full_steps_per_call"] = counts
            run["ideal"] = args.steps * full / statistics.mean(k * full + (args.steps - k) * cached for k in counts)
    return report(args, runs, samples, seconds, flops, state.num_processes, real, prompts, real_captions)


if __name__ == "__main__":
    main()
    end_processes()
