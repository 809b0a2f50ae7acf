"""Reproduce the DeepCache paper's DDPM tables at small scale, on the embedded digits DDPM.

    python scripts/reproduce.py                                   # one process
    accelerate launch --multi_gpu --num_processes 2 scripts/reproduce.py   # two processes (CPU or GPUs)

Every setting samples the same seeds (``--groups`` groups of ``--samples``; the groups give the error
bars) with ``--steps`` DDIM steps, data-parallel across processes:
- quality vs interval N (uniform and non-uniform, the paper's Tables 2 and 5);
- plain DDIM with fewer steps at the FLOPs of each uniform N (the paper's equal-throughput claim);
- a branch sweep at N = 5 (the paper's Figure 6 / Table 6);
- Block Caching (arXiv 2312.03209) at several thresholds delta, for attention units only (the Block
  Caching paper's choice) and for all units, with schedules from a profile over separate seeds.
Quality: PSNR and SSIM of each sample against the uncached sample from the same noise (fidelity),
and Frechet distance and KID on the embedded digit classifier's features against one half of the
real digits; the other half gives the real-vs-real floor. Process 0 writes ``results.json``,
``tables.md`` and ``quality_vs_speedup.png`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from deepcache import DeepCacheConfig, DeepCacheDDPMPipeline, profile_blocks
from deepcache.embedded import embedded_model_path, load_digits
from deepcache.models.flops import ideal_speedup, step_flops
from deepcache.evaluation.metrics import FeatureDistances, digit_features, psnr, ssim
from deepcache.evaluation.parallel import process_state, sample_images


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", help="a DDPM pipeline folder (default: the embedded digits model)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of the baseline (default 50)")
    parser.add_argument("--samples", type=int, default=100, help="samples per seed group (default 100)")
    parser.add_argument("--groups", type=int, default=3, help="seed groups, for error bars (default 3)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--intervals", type=int, nargs="+", default=[2, 3, 5, 10])
    parser.add_argument("--nonuniform-intervals", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--branch", type=int, default=2, help="cached branch of the interval runs (default 2, the paper's)")
    parser.add_argument("--sweep-interval", type=int, default=5)
    parser.add_argument("--sweep-branches", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument("--block-units", nargs="*", choices=["attentions", "resnets", "all"], default=["attentions", "all"],
                        help="unit kinds of the Block Caching runs (default attentions all; none: no Block Caching)")
    parser.add_argument("--block-deltas", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2], help="Block Caching thresholds")
    parser.add_argument("--profile-runs", type=int, default=2, help="profiling runs of --batch-size samples (default 2)")
    parser.add_argument("--kid-subset", type=int, default=100, help="KID subset size (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1)")
    parser.add_argument("--output-dir", default="reproduction")
    parser.add_argument("--reuse-samples", action="store_true",
                        help="reuse the samples.pt of an earlier run for the settings it has; sample only the others")
    args = parser.parse_args(argv)
    if min(args.steps, args.samples, args.groups, args.batch_size) < 1:
        parser.error("--steps, --samples, --groups and --batch-size must be at least 1")
    if args.kid_subset > args.samples:
        parser.error(f"--kid-subset ({args.kid_subset}) cannot exceed --samples ({args.samples})")
    return args


def settings(args, flops: dict[int, tuple[int, int]], profiles: dict) -> list[dict]:
    """Every run: name, group, call arguments and FLOP-ideal speedup over the baseline."""
    def cached(interval, branch, uniform, group):
        setting = DeepCacheConfig(cache_interval=interval, cache_branch_id=branch, uniform=uniform)
        num_full = len(setting.full_steps(args.steps))
        schedule = "uniform" if uniform else "non-uniform"
        return dict(name=f"N={interval} b{branch} {schedule}", group=group, interval=interval, branch=branch, schedule=schedule,
                    call=dict(num_inference_steps=args.steps, **setting.as_kwargs()),
                    ideal=ideal_speedup(*flops[branch], args.steps, num_full))

    runs = [dict(name=f"DDIM-{args.steps}", group="baseline", interval=1, branch=None, schedule="-",
                 call=dict(num_inference_steps=args.steps), ideal=1.0)]
    runs += [cached(n, args.branch, True, "interval") for n in args.intervals]
    runs += [cached(n, args.branch, False, "interval") for n in args.nonuniform_intervals]
    for run in [r for r in runs if r["group"] == "interval" and r["schedule"] == "uniform"]:
        steps = max(1, round(args.steps / run["ideal"]))
        runs.append(dict(name=f"DDIM-{steps}", group="fewer steps", interval=1, branch=None, schedule="-",
                         call=dict(num_inference_steps=steps), ideal=args.steps / steps, matches=run["name"]))
    done = {r["name"] for r in runs}
    runs += [r for b in args.sweep_branches if (r := cached(args.sweep_interval, b, True, "branch sweep"))["name"] not in done]
    for units, profile in profiles.items():
        for delta in args.block_deltas:
            schedule = profile.schedule(delta)
            runs.append(dict(name=f"Block Caching {units} delta={delta:g}", group="block caching", units=units, delta=delta,
                             interval=1, branch=None, schedule="-", call=dict(num_inference_steps=args.steps, block_cache=schedule),
                             ideal=1 / schedule.flop_fraction))
    return runs


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> dict | None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    state = process_state()
    pipe = DeepCacheDDPMPipeline.from_pretrained(args.model or embedded_model_path())
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(state.device)
    real, _ = load_digits(pipe.unet.config.sample_size)  # before any sampling: without scikit-learn it stops here

    config = pipe.unet.config
    with torch.device("meta"):
        meta_unet = type(pipe.unet).from_config(config)
        meta_args = (torch.empty(1, config.in_channels, config.sample_size, config.sample_size), torch.tensor(500))
    branches = {args.branch, *args.sweep_branches}
    flops = {b: step_flops(meta_unet, meta_args, {}, b) for b in sorted(branches)}
    profile_seeds = range(10**6, 10**6 + args.profile_runs)  # not among the evaluation seeds
    profiles = {units: profile_blocks(pipe, seeds=profile_seeds, units=units, batch_size=args.batch_size,
                                      num_inference_steps=args.steps, progress=state.is_main_process)
                for units in dict.fromkeys(args.block_units)}  # fmt: skip
    runs = settings(args, flops, profiles)
    seeds = list(range(args.samples * args.groups))

    saved = Path(args.output_dir) / "samples.pt"
    quantized, seconds = torch.load(saved) if args.reuse_samples and saved.exists() else ({}, {})
    missing = [run for run in runs if run["name"] not in quantized]
    for index, run in enumerate(missing):
        start = time.perf_counter()
        images = sample_images(pipe, seeds, args.batch_size, **run["call"])
        quantized[run["name"]] = (images * 255).round().to(torch.uint8)  # 8-bit, as saved images are
        seconds[run["name"]] = time.perf_counter() - start
        if state.is_main_process:
            print(f"[{index + 1}/{len(missing)}] {run['name']}: {seconds[run['name']]:.1f} s", flush=True)
    if missing and state.is_main_process:  # kept, so the scores can be recomputed (--reuse-samples)
        saved.parent.mkdir(parents=True, exist_ok=True)
        torch.save((quantized, seconds), saved)
    if not state.is_main_process:
        return None
    for units, profile in profiles.items():
        profile.save(Path(args.output_dir) / f"block_profile_{units}.json")
    return report(args, runs, {name: images.float() / 255 for name, images in quantized.items()}, seconds, flops, state.num_processes, real)


def report(args, runs, samples, seconds, flops, processes: int, real: torch.Tensor) -> dict:
    """Scores and tables; ``real`` is the digits data set in [-1, 1], the reference for FD and KID."""
    real = (real + 1) / 2
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    reference, held_out = real[order[: len(order) // 2]], real[order[len(order) // 2 :]]
    distances = FeatureDistances(reference, digit_features(), kid_subset_size=args.kid_subset)

    def grouped(images):
        return images.split(args.samples)[: args.groups]

    floor = [distances.distances(group) for group in held_out.split(args.samples) if len(group) == args.samples][: args.groups]
    baseline = samples[runs[0]["name"]]
    base_seconds = seconds[runs[0]["name"]]
    results = []
    for run in runs:
        images = samples[run["name"]]
        scores = [distances.distances(group) for group in grouped(images)]
        row = {k: v for k, v in run.items() if k != "call"}
        row.update({"flop_fraction": run["call"]["block_cache"].flop_fraction} if "block_cache" in run["call"] else {})
        row.update(
            steps=run["call"]["num_inference_steps"], seconds=seconds[run["name"]], speedup=base_seconds / seconds[run["name"]],
            psnr=psnr(baseline, images).clamp(max=100).mean().item() if run is not runs[0] else None,
            ssim=ssim(baseline, images).mean().item() if run is not runs[0] else None,
            fd=mean_std([s["fd"] for s in scores]), kid=mean_std([s["kid"] for s in scores]),
        )
        results.append(row)
    payload = dict(
        arguments=vars(args), processes=processes, samples_per_setting=args.samples * args.groups,
        real_vs_real=dict(fd=mean_std([s["fd"] for s in floor]), kid=mean_std([s["kid"] for s in floor])),
        flops={str(b): dict(full=f, cached=c) for b, (f, c) in flops.items()}, runs=results,
    )
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    (output / "tables.md").write_text(tables(payload))
    plot(payload, output / "quality_vs_speedup.png")
    print(tables(payload))
    print(f"wrote {output / 'results.json'}, {output / 'tables.md'}, {output / 'quality_vs_speedup.png'}")
    return payload


def _pm(pair, scale=1.0, digits=2) -> str:
    return f"{pair[0] * scale:.{digits}f} ± {pair[1] * scale:.{digits}f}"


def family(payload: dict, group: str) -> list[dict]:
    """The runs of one table; the branch sweep includes the interval run at its N and branch."""
    runs = payload["runs"]
    if group != "branch sweep":
        return [r for r in runs if r["group"] == group]
    interval = payload["arguments"]["sweep_interval"]
    shared = [r for r in runs if r["group"] == "interval" and r["schedule"] == "uniform" and r["interval"] == interval]
    return sorted(shared + [r for r in runs if r["group"] == group], key=lambda r: r["branch"])


def tables(payload: dict) -> str:
    args = payload["arguments"]
    floor = payload["real_vs_real"]
    lines = [
        f"{payload['samples_per_setting']} samples per setting ({args['groups']} seed groups of {args['samples']}; ± is the "
        f"standard deviation across groups), {args['steps']} DDIM steps for the baseline, {payload['processes']} process(es).",
        f"Real-vs-real floor (held-out real digits, same group size): FD {_pm(floor['fd'])}, KID x1000 {_pm(floor['kid'], 1000, 1)}.",
        "",
    ]
    groups = [("interval", "Quality vs interval N (branch %d)" % args["branch"]), ("fewer steps", "Plain DDIM with fewer steps at equal FLOPs"),
              ("branch sweep", f"Branch sweep at N = {args['sweep_interval']}, uniform"),
              ("block caching", "Block Caching (no scale-shift), profiled over %d separate runs" % args["profile_runs"])]
    head = "| setting | steps | FLOP-ideal speedup | measured speedup | PSNR vs baseline (dB) | SSIM vs baseline | FD | KID x1000 |"
    for group, title in groups:
        if not family(payload, group):
            continue
        lines += [f"### {title}", "", head, "|---|---|---|---|---|---|---|---|"]
        for r in [payload["runs"][0], *family(payload, group)]:
            name = r["name"] + (f" (= FLOPs of {r['matches']})" if r.get("matches") else "")
            fidelity = ("-", "-") if r["psnr"] is None else (f"{r['psnr']:.1f}", f"{r['ssim']:.3f}")
            lines.append(f"| {name} | {r['steps']} | {r['ideal']:.2f}x | {r['speedup']:.2f}x | {fidelity[0]} | {fidelity[1]} | "
                         f"{_pm(r['fd'])} | {_pm(r['kid'], 1000, 1)} |")
        lines.append("")
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    """FD and PSNR against FLOP-ideal speedup, one line per family of settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = payload["runs"]
    families = {
        "DeepCache, uniform": [r for r in family(payload, "interval") if r["schedule"] == "uniform"],
        "DeepCache, non-uniform": [r for r in family(payload, "interval") if r["schedule"] == "non-uniform"],
        "DDIM, fewer steps": family(payload, "fewer steps"),
        f"branch sweep, N={payload['arguments']['sweep_interval']}": family(payload, "branch sweep"),
        **{f"Block Caching, {units}": [r for r in family(payload, "block caching") if r["units"] == units]
           for units in payload["arguments"]["block_units"]},
    }
    figure, (fd_axis, psnr_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, rows in families.items():
        rows = sorted([runs[0], *rows] if "sweep" not in label else rows, key=lambda r: r["ideal"])
        if not rows:
            continue
        x = [r["ideal"] for r in rows]
        fd_axis.errorbar(x, [r["fd"][0] for r in rows], yerr=[r["fd"][1] for r in rows], marker="o", capsize=3, label=label)
        cached = [r for r in rows if r["psnr"] is not None]
        psnr_axis.plot([r["ideal"] for r in cached], [r["psnr"] for r in cached], marker="o", label=label)
        if "sweep" in label:  # name the branch of each point
            for r in rows:
                fd_axis.annotate(f"b{r['branch']}", (r["ideal"], r["fd"][0]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    floor = payload["real_vs_real"]["fd"][0]
    fd_axis.axhline(floor, color="grey", linestyle="--", label="real vs real")
    fd_axis.set(xlabel="FLOP-ideal speedup", ylabel="Frechet distance (classifier features)", title="Sample quality")
    psnr_axis.set(xlabel="FLOP-ideal speedup", ylabel="PSNR vs uncached sample (dB)", title="Fidelity to the baseline")
    for axis in (fd_axis, psnr_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
