"""Reproduce the DeepCache paper's DDPM tables at small scale, on the embedded digits DDPM.

    python scripts/reproduce.py                                   # one process
    accelerate launch --multi_gpu --num_processes 2 scripts/reproduce.py   # two processes (CPU or GPUs)

Every setting samples the same seeds (``--groups`` groups of ``--samples``; the groups give the error
bars) with ``--steps`` DDIM steps, data-parallel across processes:
- quality vs interval N (uniform and non-uniform, the paper's Tables 2 and 5);
- plain DDIM with fewer steps at the FLOPs of each uniform N (the paper's equal-throughput claim);
- a branch sweep at N = 5 (the paper's Figure 6 / Table 6).
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

from deepcache import DeepCacheConfig, DeepCacheDDPMPipeline
from deepcache.embedded import embedded_model_path, load_digits
from deepcache.flops import ideal_speedup, step_flops
from deepcache.metrics import FeatureDistances, digit_features, psnr, ssim
from deepcache.parallel import process_state, sample_images


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
    parser.add_argument("--kid-subset", type=int, default=100, help="KID subset size (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1)")
    parser.add_argument("--output-dir", default="reproduction")
    parser.add_argument("--reuse-samples", action="store_true", help="score the samples.pt of an earlier run instead of sampling")
    args = parser.parse_args(argv)
    if min(args.steps, args.samples, args.groups, args.batch_size) < 1:
        parser.error("--steps, --samples, --groups and --batch-size must be at least 1")
    if args.kid_subset > args.samples:
        parser.error(f"--kid-subset ({args.kid_subset}) cannot exceed --samples ({args.samples})")
    return args


def settings(args, flops: dict[int, tuple[int, int]]) -> list[dict]:
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

    config = pipe.unet.config
    with torch.device("meta"):
        meta_unet = type(pipe.unet).from_config(config)
        meta_args = (torch.empty(1, config.in_channels, config.sample_size, config.sample_size), torch.tensor(500))
    branches = {args.branch, *args.sweep_branches}
    flops = {b: step_flops(meta_unet, meta_args, {}, b) for b in sorted(branches)}
    runs = settings(args, flops)
    seeds = list(range(args.samples * args.groups))

    saved = Path(args.output_dir) / "samples.pt"
    if args.reuse_samples:
        quantized, seconds = torch.load(saved)
    else:
        samples, seconds = {}, {}
        for index, run in enumerate(runs):
            start = time.perf_counter()
            samples[run["name"]] = sample_images(pipe, seeds, args.batch_size, **run["call"])
            seconds[run["name"]] = time.perf_counter() - start
            if state.is_main_process:
                print(f"[{index + 1}/{len(runs)}] {run['name']}: {seconds[run['name']]:.1f} s", flush=True)
        quantized = {name: (images * 255).round().to(torch.uint8) for name, images in samples.items()}  # 8-bit, as saved images are
        if state.is_main_process:  # kept, so the scores can be recomputed (--reuse-samples)
            saved.parent.mkdir(parents=True, exist_ok=True)
            torch.save((quantized, seconds), saved)
    if not state.is_main_process:
        return None
    return report(args, runs, {name: images.float() / 255 for name, images in quantized.items()}, seconds, flops, state.num_processes)


def report(args, runs, samples, seconds, flops, processes: int) -> dict:
    real, _ = load_digits(samples[runs[0]["name"]].shape[-1])
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
              ("branch sweep", f"Branch sweep at N = {args['sweep_interval']}, uniform")]
    head = "| setting | steps | FLOP-ideal speedup | measured speedup | PSNR vs baseline (dB) | SSIM vs baseline | FD | KID x1000 |"
    for group, title in groups:
        lines += [f"### {title}", "", head, "|---|---|---|---|---|---|---|---|"]
        rows = [payload["runs"][0], *family(payload, group)]
        for r in rows:
            name = r["name"] + (f" (= FLOPs of {r['matches']})" if r.get("matches") else "")
            fidelity = ("-", "-") if r["psnr"] is None else (f"{r['psnr']:.1f}", f"{r['ssim']:.3f}")
            lines.append(f"| {name} | {r['steps']} | {r['ideal']:.2f}x | {r['speedup']:.2f}x | {fidelity[0]} | {fidelity[1]} | "
                         f"{_pm(r['fd'])} | {_pm(r['kid'], 1000, 1)} |")
        lines.append("")
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    """FD and PSNR against FLOP-ideal speedup, one line per family of settings."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'deepcache[research]'): no plot")
        return
    runs = payload["runs"]
    families = {
        "DeepCache, uniform": [r for r in family(payload, "interval") if r["schedule"] == "uniform"],
        "DeepCache, non-uniform": [r for r in family(payload, "interval") if r["schedule"] == "non-uniform"],
        "DDIM, fewer steps": family(payload, "fewer steps"),
        f"branch sweep, N={payload['arguments']['sweep_interval']}": family(payload, "branch sweep"),
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
