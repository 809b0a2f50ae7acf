"""Why multistep solvers broke the linear forecast: each cached step's error against the final image's, per solver.

    python scripts/forecast_errors.py        # DDIM, Euler Karras, DPM-Solver++ 2M Karras: about 6 minutes
    python scripts/forecast_errors.py --solvers dpm++karras dpm++ euler-karras euler ddim unipc euler-a plms \
        --guidance 7.5 5 --intervals 2 3 5 --prompts 32 --offset 2000                     # the held-out table

For each solver and guidance scale, the embedded model samples the same captions uncached, then cached
(branch 0, every N-th step full for each of ``--intervals``) with each forecast. On every cached step the U-Net also
runs whole on the step's own inputs, so the step's error is measured where it is made: the relative
RMS error of the guided noise prediction, and of its unconditional and conditional halves. The final
images are scored against the uncached ones (PSNR). Writes ``results.json`` and ``forecast_errors.png``
(one panel per solver and guidance at the first interval: the guided error per step, one line per
forecast, the PSNR in the legend) and ``tables.md`` (PSNR of each forecast) to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheStableDiffusionPipeline
from deepcache.embedded.emoji import shuffled_training_captions
from deepcache.embedded.text_to_image import embedded_text_to_image_path
from deepcache.evaluation.parallel import sample_images
from deepcache.evaluation.solvers import SOLVERS
from deepcache.measurement.fidelity import mean_psnr
from deepcache.schedules import uniform_full_steps


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--solvers", nargs="+", choices=list(SOLVERS), default=["ddim", "euler-karras", "dpm++karras"])
    parser.add_argument("--forecasts", nargs="+", default=["reuse", "linear", "auto"])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 7.5])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--intervals", type=int, nargs="+", default=[3])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--offset", type=int, default=0, help="first shuffled training caption and seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", help="a pipeline folder (default: the embedded emoji model)")
    parser.add_argument("--output-dir", default="docs/results/forecast_errors")
    return parser.parse_args(argv)


def relative_rms(error: torch.Tensor, reference: torch.Tensor) -> float:
    return (error.pow(2).mean() / reference.pow(2).mean()).sqrt().item()


def step_errors(pipe, guidance: float, log: list):
    """A U-Net hook that, on each cached call, runs the U-Net whole on the same inputs and logs the errors."""

    def hook(module, args, kwargs, output):
        if kwargs.get("replicate_prev_features") is None:
            return
        full = module.forward(*args, **{**kwargs, "replicate_prev_features": None, "return_dict": False})[0]
        cached = output[0] if isinstance(output, tuple) else output.sample
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        row = {"timestep": int(timestep)}
        if guidance > 1:
            (cached_u, cached_c), (full_u, full_c) = cached.chunk(2), full.chunk(2)
            guided = full_u + guidance * (full_c - full_u)
            error = cached_u - full_u + guidance * ((cached_c - full_c) - (cached_u - full_u))
            row |= {
                "guided": relative_rms(error, guided),
                "unconditional": relative_rms(cached_u - full_u, full_u),
                "conditional": relative_rms(cached_c - full_c, full_c),
            }
        else:
            row["guided"] = relative_rms(cached - full, full)
        log.append(row)

    return pipe.unet.register_forward_hook(hook, with_kwargs=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    pipe = DeepCacheStableDiffusionPipeline.from_pretrained(args.model or embedded_text_to_image_path())
    pipe.set_progress_bar_config(disable=True)
    config = pipe.scheduler.config
    prompts = shuffled_training_captions(args.prompts, args.offset)
    seeds = list(range(args.offset, args.offset + args.prompts))  # one batched call per setting
    rows = []
    for solver in args.solvers:
        pipe.scheduler = SOLVERS[solver].scheduler(config)
        for guidance in args.guidance:
            call = dict(num_inference_steps=args.steps, guidance_scale=guidance)
            reference = sample_images(pipe, seeds, len(seeds), prompts=prompts, **call)
            for interval in args.intervals:
                full_steps = uniform_full_steps(args.steps, interval)
                for forecast in args.forecasts:
                    log = []
                    handle = step_errors(pipe, guidance, log)
                    try:
                        caching = dict(cache_full_steps=full_steps, cache_branch_id=0, cache_forecast=forecast)
                        images = sample_images(pipe, seeds, len(seeds), prompts=prompts, **call, **caching)
                    finally:
                        handle.remove()
                    rows.append(
                        {
                            "solver": solver,
                            "guidance": guidance,
                            "interval": interval,
                            "forecast": forecast,
                            "psnr": mean_psnr(reference, images),
                            "auto": pipe.deepcache_record.forecast,
                            "steps": log,
                        }
                    )
                    label = f"{SOLVERS[solver].label}, guidance {guidance:g}, N = {interval}, {forecast}"
                    print(f"{label}: {rows[-1]['psnr']:.2f} dB", flush=True)
    payload = {"args": vars(args), "rows": rows}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / "tables.md").write_text(table(payload))
    plot(payload, out / "forecast_errors.png")
    return payload


def table(payload: dict) -> str:
    """PSNR (dB) against the uncached images: one row per solver and guidance, ``reuse / linear / auto`` per N."""
    rows, intervals = payload["rows"], payload["args"]["intervals"]
    forecasts = payload["args"]["forecasts"]
    lines = [
        "| solver, guidance | " + " | ".join(f"N = {n}: {' / '.join(forecasts)}" for n in intervals) + " |",
        "|---" * (1 + len(intervals)) + "|",
    ]
    for solver, guidance in dict.fromkeys((r["solver"], r["guidance"]) for r in rows):
        cells = []
        for interval in intervals:
            psnr = {
                r["forecast"]: r["psnr"]
                for r in rows
                if (r["solver"], r["guidance"], r["interval"]) == (solver, guidance, interval)
            }
            cells.append(" / ".join(f"{psnr[f]:.1f}" for f in forecasts if f in psnr))
        lines.append(f"| {SOLVERS[solver].label}, {guidance:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> None:
    """The guided prediction's relative error per cached step at the first interval, one panel per solver and
    guidance scale."""
    import matplotlib.pyplot as plt

    first = payload["args"]["intervals"][0]
    rows = [r for r in payload["rows"] if r["interval"] == first]
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    scales = list(dict.fromkeys(r["guidance"] for r in rows))
    figure, axes = plt.subplots(
        len(scales), len(solvers), figsize=(4.6 * len(solvers), 3.4 * len(scales)), squeeze=False, sharey=True
    )
    for row in rows:
        axis = axes[scales.index(row["guidance"])][solvers.index(row["solver"])]
        steps = row["steps"]
        axis.plot(
            [s["timestep"] for s in steps],
            [s["guided"] for s in steps],
            marker="o",
            label=f"{row['forecast']}: {row['psnr']:.1f} dB",
        )
        axis.set_title(f"{SOLVERS[row['solver']].label}, guidance {row['guidance']:g}", fontsize=10)
        axis.set_xlabel("timestep of the cached step")
        axis.set_yscale("log")
        axis.invert_xaxis()
        axis.legend(fontsize=8)
    for axis in axes[:, 0]:
        axis.set_ylabel("relative error of the\n(guided) noise prediction")
    figure.suptitle(
        f"Each cached step's error where it is made (branch 0, one full step in every {first})",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
