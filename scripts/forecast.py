"""Forecast vs reuse vs fewer steps at equal FLOPs, on the embedded emoji model (issue 27's measurement).

    python scripts/forecast.py                                             # the whole grid, one process
    accelerate launch --num_processes 2 scripts/forecast.py                # two processes (CPU or GPUs)
    python scripts/forecast.py --solvers ddim --runs 50:5 --samples 16     # a quick look

For each solver and each ``steps:guidance`` run, and each FLOP-ideal budget, the DeepCache setting
(branch 0 or 1, uniform N) with the shortest interval whose ideal speedup is within 10 % of the
budget runs with each substitute -
``reuse`` (DeepCache), the ``linear`` rule, ``auto`` (the forecast chosen for the solver), and per-channel
gains fitted by ``calibrate_forecast`` on
separate calibration prompts (one batched call) - beside the same solver with fewer steps at about the same
FLOPs. Every sample is scored against the same solver's uncached sample from the same noise (PSNR,
SSIM), the set by Frechet distance to the uncached set on the embedded classifier's features, and
prompt following by the embedded scorer's text score. Writes ``results.json``, ``tables.md`` and
``forecast_vs_speedup.png`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheStableDiffusionPipeline, calibrate_forecast
from deepcache.embedded.emoji import shuffled_training_captions
from deepcache.embedded.text_to_image import embedded_text_to_image_path
from deepcache.evaluation.metrics import FeatureDistances, emoji_features, emoji_text_score, psnr, ssim
from deepcache.evaluation.parallel import end_processes, process_state, sample_images
from deepcache.evaluation.solvers import SOLVERS
from deepcache.measurement import ideal_speedup, step_flops
from deepcache.models import cache_aware_class

METHODS = ("reuse", "linear", "auto", "fitted")
CALIBRATION_OFFSET = 1000  # calibration captions: another stretch of the shuffled training captions


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--solvers", nargs="+", choices=list(SOLVERS), default=["ddim", "dpm++", "dpm++karras", "plms"])
    parser.add_argument(
        "--runs", nargs="+", default=["50:5", "25:7.5"], help="steps:guidance of each run (default 50:5 25:7.5)"
    )
    parser.add_argument(
        "--budgets", type=float, nargs="+", default=[1.5, 1.7, 2.0, 2.3, 3.3], help="FLOP-ideal speedups"
    )
    parser.add_argument("--branches", type=int, nargs="+", default=[0, 1], help="branches to pick settings from")
    parser.add_argument("--samples", type=int, default=128, help="evaluation samples (default 128)")
    parser.add_argument("--calibration-prompts", type=int, default=16, help="prompts of the calibration call")
    parser.add_argument("--scalar", action="store_true", help="also fit one gain for all channels")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["fewer steps", *METHODS],
        help="what to run (default: fewer steps, reuse, linear, auto, fitted)",
    )
    parser.add_argument(
        "--merge", action="store_true", help="keep --output-dir's earlier rows, replacing those measured again"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1)")
    parser.add_argument("--model", help="a pipeline folder (default: the embedded emoji model)")
    parser.add_argument("--output-dir", default="docs/results/forecast")
    args = parser.parse_args(argv)
    args.runs = [(int(s), float(g)) for s, g in (r.split(":") for r in args.runs)]
    return args


def branch_flops(pipe, branches) -> dict[int, tuple[int, int]]:
    """Full and cached U-Net FLOPs per branch, for one guided sample."""
    config = pipe.unet.config
    with torch.device("meta"):
        unet = cache_aware_class(pipe.unet).from_config(config)
        args = (torch.empty(2, config.in_channels, config.sample_size, config.sample_size), torch.tensor(500))
        kwargs = dict(encoder_hidden_states=torch.empty(2, pipe.tokenizer.model_max_length, config.cross_attention_dim))
    return {b: step_flops(unet, args, kwargs, b) for b in branches}


def setting_for(budget: float, steps: int, flops: dict) -> dict:
    """The uniform DeepCache setting with the shortest interval (forecasts are best over short runs) whose FLOP-ideal
    speedup is within 10 % of ``budget``; else the closest one."""
    options = []
    for branch, (full, cached) in sorted(flops.items()):
        for interval in range(2, 11):
            ideal = ideal_speedup(full, cached, steps, math.ceil(steps / interval))
            options.append((abs(math.log(ideal / budget)), interval, branch, ideal))
    near = [o for o in options if o[0] <= math.log(1.1)]
    _, interval, branch, ideal = min(near, key=lambda o: (o[1], o[0])) if near else min(options)
    return {"branch": branch, "interval": interval, "ideal": ideal}


def main(argv: list[str] | None = None) -> dict | None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    state = process_state()
    pipe = DeepCacheStableDiffusionPipeline.from_pretrained(args.model or embedded_text_to_image_path())
    pipe.set_progress_bar_config(disable=True)
    pipe.to(state.device)
    base_config = pipe.scheduler.config
    seeds = list(range(args.samples))
    prompts = shuffled_training_captions(args.samples, 0)
    calibration_prompts = shuffled_training_captions(args.calibration_prompts, CALIBRATION_OFFSET)
    flops = branch_flops(pipe, args.branches)
    methods = [m for m in args.methods if m != "fewer steps"] + (["fitted, one gain"] if args.scalar else [])
    rows = []
    earlier = json.loads((Path(args.output_dir) / "results.json").read_text())["rows"] if args.merge else []
    started = time.perf_counter()
    for solver in args.solvers:
        pipe.scheduler = SOLVERS[solver].scheduler(base_config)
        for steps, guidance in args.runs:
            call = dict(num_inference_steps=steps, guidance_scale=guidance)
            key = f"{solver} {steps} steps g{guidance:g}"
            reference = sample_images(pipe, seeds, args.batch_size, prompts=prompts, **call)
            for budget in args.budgets:
                setting = setting_for(budget, steps, flops)
                caching = dict(cache_interval=setting["interval"], cache_branch_id=setting["branch"])
                fewer = max(1, round(steps / setting["ideal"]))
                candidates = (
                    {"fewer steps": dict(call, num_inference_steps=fewer)} if "fewer steps" in args.methods else {}
                )
                calibration_call = dict(
                    prompt=calibration_prompts,
                    generator=[torch.Generator().manual_seed(10**6 + i) for i in range(len(calibration_prompts))],
                )
                for method in methods:
                    forecast = method
                    if method.startswith("fitted"):
                        forecast = calibrate_forecast(
                            pipe,
                            calls=[calibration_call],
                            per_channel=method == "fitted",
                            progress=False,
                            **call,
                            **caching,
                        )
                        calibration_call["generator"] = [
                            torch.Generator().manual_seed(10**6 + i) for i in range(len(calibration_prompts))
                        ]
                    candidates[method] = dict(call, **caching, cache_forecast=forecast)
                for method, kwargs in candidates.items():
                    images = sample_images(pipe, seeds, args.batch_size, prompts=prompts, **kwargs)
                    calibration = kwargs.get("cache_forecast")
                    rows.append(
                        {
                            "solver": solver,
                            "steps": steps,
                            "guidance": guidance,
                            "budget": budget,
                            "method": method,
                            "branch": setting["branch"],
                            "interval": setting["interval"],
                            "call_steps": kwargs["num_inference_steps"],
                            "ideal": setting["ideal"] if method != "fewer steps" else steps / fewer,
                            "meta": dict(calibration.meta) if hasattr(calibration, "meta") else None,
                            **scores(reference, images, prompts),
                        }
                    )
                    if state.is_main_process:
                        row = rows[-1]
                        print(
                            f"{key} budget {budget:g} {method}: {row['psnr']:.2f} dB "
                            f"({time.perf_counter() - started:.0f} s)",
                            flush=True,
                        )
            if state.is_main_process:  # written after each run, so a long measurement shows what it has
                payload = write(args, flops, merged(earlier, rows))
    if not state.is_main_process:
        return None
    print(tables(payload))
    return payload


def merged(earlier: list[dict], rows: list[dict]) -> list[dict]:
    """``earlier`` rows with those measured again replaced by ``rows``, in the tables' order."""
    key = lambda r: (r["solver"], r["steps"], r["guidance"], r["budget"], r["method"])  # noqa: E731
    new = {key(r): r for r in rows}
    kept = [new.pop(key(r), r) for r in earlier]
    return kept + list(new.values())


def write(args, flops: dict, rows: list[dict]) -> dict:
    payload = {"args": {k: v for k, v in vars(args).items()}, "flops": flops, "rows": rows}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / "tables.md").write_text(tables(payload))
    plot(payload, out / "forecast_vs_speedup.png")
    return payload


def scores(reference: torch.Tensor, images: torch.Tensor, prompts: list[str]) -> dict:
    """Fidelity to the uncached samples, the set's Frechet distance to them, and the text score."""
    quantized = (images * 255).round() / 255  # as saved images are
    distances = FeatureDistances(reference, emoji_features(), kid_subset_size=min(100, len(images)))
    return {
        "psnr": psnr(reference, quantized).clamp(max=100).mean().item(),
        "ssim": ssim(reference, quantized).mean().item(),
        "fd": distances.distances(quantized)["fd"],
        "text_score": emoji_text_score(quantized, prompts).mean().item(),
        "text_score_uncached": emoji_text_score(reference, prompts).mean().item(),
    }


def summary(payload: dict) -> str:
    """One Markdown table of every run: held-out PSNR of each method, the fitted calibration's choice and its PSNR
    on the calibration prompts, fitted minus fewer steps."""
    rows = payload["rows"]
    lines = [
        "| solver, steps, guidance | budget | setting (FLOP-ideal) | reuse | linear | auto | fitted (chosen) "
        "| fewer steps | fitted - fewer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group in dict.fromkeys((r["solver"], r["steps"], r["guidance"], r["budget"]) for r in rows):
        cells = {r["method"]: r for r in rows if (r["solver"], r["steps"], r["guidance"], r["budget"]) == group}
        if not {"reuse", "linear", "fitted", "fewer steps"} <= set(cells):
            continue
        fitted, fewer = cells["fitted"], cells["fewer steps"]
        best = max(r["psnr"] for r in cells.values())
        values = {m: f"**{r['psnr']:.1f}**" if r["psnr"] == best else f"{r['psnr']:.1f}" for m, r in cells.items()}
        meta = fitted["meta"] or {}
        chosen = meta.get("chosen", "?")
        calibration = meta.get("calibration_psnr", {}).get(chosen)
        chosen += "" if calibration is None else f"; calibration {calibration:.1f}"
        lines.append(
            f"| {SOLVERS[group[0]].label}, {group[1]}, {group[2]:g} | {group[3]:g}x | b{fitted['branch']} "
            f"N={fitted['interval']} ({fitted['ideal']:.2f}x) | {values['reuse']} | {values['linear']} | "
            f"{values.get('auto', '-')} | {values['fitted']} ({chosen}) | "
            f"{values['fewer steps']} ({fewer['call_steps']}) | "
            f"{fitted['psnr'] - fewer['psnr']:+.1f} |"
        )
    return "\n".join(lines)


def tables(payload: dict) -> str:
    """The summary, then one Markdown table per run: budgets down, PSNR of each method across (best in bold)."""
    rows = payload["rows"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["## Summary (PSNR dB against the uncached samples)", "", summary(payload), ""]
    for solver, steps, guidance in dict.fromkeys((r["solver"], r["steps"], r["guidance"]) for r in rows):
        group = [r for r in rows if (r["solver"], r["steps"], r["guidance"]) == (solver, steps, guidance)]
        lines += [
            f"### {SOLVERS[solver].label}, {steps} steps, guidance {guidance:g}",
            "",
            "PSNR (dB) against the uncached samples; FD to them and text score in brackets.",
            "",
            "| budget | setting (FLOP-ideal) | " + " | ".join(methods) + " |",
            "|---" * (2 + len(methods)) + "|",
        ]
        for budget in dict.fromkeys(r["budget"] for r in group):
            cells = {r["method"]: r for r in group if r["budget"] == budget}
            best = max(cells.values(), key=lambda r: r["psnr"])["method"]
            first = next(r for r in cells.values() if r["method"] != "fewer steps")
            setting = f"b{first['branch']} N={first['interval']} ({first['ideal']:.2f}x)"
            values = []
            for method in methods:
                r = cells.get(method)
                if r is None:
                    values.append("")
                    continue
                text = f"{r['psnr']:.1f}"
                text = f"**{text}**" if method == best else text
                extra = f" ({r['call_steps']} steps)" if method == "fewer steps" else ""
                values.append(f"{text}{extra} [{r['fd']:.2f}, {r['text_score']:.1f}]")
            lines.append(f"| {budget:g}x | {setting} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    """PSNR against FLOP-ideal speedup, one panel per solver and run, one line per method."""
    import matplotlib.pyplot as plt

    rows = payload["rows"]
    groups = list(dict.fromkeys((r["solver"], r["steps"], r["guidance"]) for r in rows))
    columns = len(dict.fromkeys(g[1:] for g in groups))
    solvers = list(dict.fromkeys(g[0] for g in groups))
    figure, axes = plt.subplots(len(solvers), columns, figsize=(5 * columns, 3.4 * len(solvers)), squeeze=False)
    runs = list(dict.fromkeys(g[1:] for g in groups))
    for solver, steps, guidance in groups:
        axis = axes[solvers.index(solver)][runs.index((steps, guidance))]
        group = [r for r in rows if (r["solver"], r["steps"], r["guidance"]) == (solver, steps, guidance)]
        for method in dict.fromkeys(r["method"] for r in group):
            points = sorted((r["ideal"], r["psnr"]) for r in group if r["method"] == method)
            axis.plot(*zip(*points), marker="o", label=method, linestyle="--" if method == "fewer steps" else "-")
        axis.set_title(f"{SOLVERS[solver].label}, {steps} steps, guidance {guidance:g}", fontsize=10)
        axis.set(xlabel="FLOP-ideal speedup", ylabel="PSNR vs uncached (dB)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
    end_processes()
