"""How each solver converges on a text-to-image model (default: the embedded emoji model), and where the model
predicts the noise badly.

    python scripts/solvers.py                                    # 7 solvers, 15/25/50 vs 200 steps, guidance 5 and 7.5
    python scripts/solvers.py --bands --stiffness --prompt-following
                                     # also the noise-prediction error per timestep band, how steep the guided
                                     # prediction is, and the judges' prompt-following scores
    python scripts/solvers.py --model OLD --output-dir DIR       # another model folder, e.g. an earlier training
    python scripts/solvers.py --compare DIR/results.json         # tables beside an earlier run's numbers
    python scripts/solvers.py --redraw --compare DIR/results.json  # the same from the saved results, no sampling
    accelerate launch --num_processes 2 scripts/solvers.py       # two processes (CPU or GPUs)

Each solver (built from the model's own scheduler config: SD 1.5's leading spacing and steps offset) samples
``--prompts`` training captions at each step count and at ``--reference-steps``; the table gives the mean
PSNR of the samples against the same solver's reference samples from the same noise, and each reference
against DDIM's. Euler ancestral draws fresh noise every step, so it converges in distribution only: its
PSNR stays low on any model. ``--bands`` needs the training images (Debian's fonts-noto-color-emoji and
unicode-data). Writes ``results.json``, ``tables.md`` and ``convergence.png`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache.embedded.emoji import shuffled_training_captions
from deepcache.embedded.text_to_image import embedded_text_to_image_path
from deepcache.evaluation.metrics import emoji_prompt_following
from deepcache.evaluation.parallel import end_processes, process_state
from deepcache.evaluation.solvers import SOLVERS, check_solvers, convergence, denoising_error, guidance_stiffness

PROMPT_FOLLOWING_CALL = dict(num_inference_steps=50, guidance_scale=5.0)  # the tests' and the demo's


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--model", help="a Stable Diffusion folder (default: the embedded emoji model)")
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), help=f"among {', '.join(SOLVERS)} (default all)")
    parser.add_argument("--steps", type=int, nargs="+", default=[15, 25, 50])
    parser.add_argument("--reference-steps", type=int, default=200)
    parser.add_argument("--guidance", type=float, nargs="+", default=[5.0, 7.5])
    parser.add_argument("--prompts", type=int, default=16, help="training captions, seeds 0.. (default 16)")
    parser.add_argument("--bands", action="store_true", help="also the noise-prediction error per timestep band")
    parser.add_argument(
        "--prompt-following",
        action="store_true",
        help="also the judges' prompt-following scores (colour words, training and held-out captions)",
    )
    parser.add_argument(
        "--stiffness", action="store_true", help="also how steep the guided prediction is in the latent (8 prompts)"
    )
    parser.add_argument(
        "--redraw", action="store_true", help="no sampling: tables and plot from --output-dir's results"
    )
    parser.add_argument("--compare", help="an earlier results.json to show beside this run's numbers")
    parser.add_argument("--compare-label", default="before")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", default="docs/results/solvers")
    args = parser.parse_args(argv)
    try:
        check_solvers(args.solvers)
    except ValueError as error:
        parser.error(str(error))
    if args.prompts < 1:
        parser.error(f"--prompts must be at least 1, but got {args.prompts}")
    return args


def band_rows(pipe) -> dict:
    """Noise-prediction error per band on the held-out emoji and as many training emoji."""
    from deepcache.embedded.emoji import build_emoji_data
    from deepcache.embedded.text_to_image import IMAGE_SIZE

    data = build_emoji_data(IMAGE_SIZE, seed=0)  # the training split's seed
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    held_out = torch.from_numpy(data.held_out)
    result = {}
    for split, mask in (("held_out", held_out), ("training", ~held_out)):
        chosen = mask.nonzero().squeeze(1)[: int(held_out.sum())]
        result[split] = denoising_error(pipe, images[chosen], [data.captions[i] for i in chosen.tolist()])
    return result


def tables(payload: dict, earlier: dict | None = None, label: str = "before") -> str:
    def earlier_psnr(row):
        for old in (earlier or {}).get("convergence", []):
            if (old["solver"], old["guidance"], old["steps"]) == (row["solver"], row["guidance"], row["steps"]):
                return f" | {old['psnr']:.1f}"
        return " | -" if earlier else ""

    rows = payload["convergence"]
    reference = rows[0]["reference_steps"] if rows else payload["arguments"]["reference_steps"]
    extra = f" | {label}" if earlier else ""
    compared = f"; {label}: {earlier['model']}" if earlier else ""
    lines = [
        f"PSNR (dB) of each solver's samples against its own {reference}-step samples "
        f"({payload['arguments']['prompts']} prompts, same noise){compared}.",
        "",
        f"| solver | guidance | steps | PSNR{extra} | {reference} steps vs DDIM-{reference} |",
        "|---|---|---|---|---|" + ("---|" if earlier else ""),
    ]
    lines += [
        f"| {r['label']} | {r['guidance']:g} | {r['steps']} | {r['psnr']:.1f}{earlier_psnr(r)} | "
        f"{r['reference_vs_ddim']:.1f} |"
        for r in rows
    ]
    if "prompt_following" in payload:
        following, before = payload["prompt_following"], (earlier or {}).get("prompt_following", {})
        lines += [
            "",
            "Prompt following by the embedded judges (the pipeline's own scheduler, "
            + ", ".join(f"{k} {v}" for k, v in PROMPT_FOLLOWING_CALL.items())
            + "): colour words (each colour's heart, circle and square, 4 seeds), and the CLDR subgroup / group "
            "accuracy and text score on 64 training and 64 held-out captions.",
            "",
            f"| score | value{extra} |",
            "|---|---|" + ("---|" if earlier else ""),
        ]
        lines += [
            f"| {key} | {value:.3f}" + (f" | {before[key]:.3f}" if key in before else " | -" if earlier else "") + " |"
            for key, value in following.items()
        ]
    if "stiffness" in payload:
        before = {r["timestep"]: r for r in (earlier or {}).get("stiffness", [])}
        scale = payload["stiffness"][0]["guidance_scale"]
        lines += [
            "",
            "Steepness of the noise prediction in the noisy latent (dominant eigenvalue magnitude of its Jacobian, "
            f"8 prompts): unconditional u and conditional c (about 1 at high noise), their difference c - u (small "
            "where both move alike with the latent), and guided "
            f"u + {scale:g} (c - u)" + (f"; {label} in brackets" if before else "") + ".",
            "",
            "| timestep | u | c | c - u | guided |",
            "|---|---|---|---|---|",
        ]
        for row in payload["stiffness"]:
            old = before.get(row["timestep"])
            cells = [
                f"{row[k]:.2f}" + (f" ({old[k]:.2f})" if old else "")
                for k in ("unconditional", "conditional", "difference", "guided")
            ]
            lines.append(f"| {row['timestep']} | " + " | ".join(cells) + " |")
    if "bands" in payload:
        bands = payload["bands"]
        lines += [
            "",
            "Noise-prediction error per band of training timesteps (posterior-mean latents, 2 draws per image): "
            "MSE of the predicted noise, and that error carried to the clean latent.",
            "",
            "| timesteps | held-out noise MSE | training noise MSE | held-out latent MSE | training latent MSE |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {h['band'][0]}-{h['band'][1]} | {h['noise_mse']:.4f} | {t['noise_mse']:.4f} | {h['latent_mse']:.5f} | "
            f"{t['latent_mse']:.5f} |"
            for h, t in zip(bands["held_out"], bands["training"])
        ]
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path, earlier: dict | None = None, label: str = "before") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["convergence"]
    guidances = sorted({r["guidance"] for r in rows})
    figure, axes = plt.subplots(1, len(guidances), figsize=(6 * len(guidances), 4.5), squeeze=False, sharey=True)
    for axis, guidance in zip(axes[0], guidances):
        for index, name in enumerate(dict.fromkeys(r["solver"] for r in rows)):
            color = plt.cm.tab10(index)
            for source, style, suffix in ((payload, "-", ""), (earlier, ":", f" ({label})")):
                mine = [
                    r for r in (source or {}).get("convergence", []) if (r["solver"], r["guidance"]) == (name, guidance)
                ]
                if mine:
                    axis.plot(
                        [r["steps"] for r in mine],
                        [r["psnr"] for r in mine],
                        style,
                        marker="o",
                        color=color,
                        label=SOLVERS[name].label + suffix,
                    )
        axis.set(
            xscale="log",
            xlabel="steps",
            title=f"guidance {guidance:g}",
            ylabel=f"PSNR vs own {rows[0]['reference_steps']} steps (dB)",
        )
        axis.set_xticks(sorted({r["steps"] for r in rows}), [str(s) for s in sorted({r["steps"] for r in rows})])
        axis.minorticks_off()
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    figure.suptitle(f"Solver convergence on {payload['model']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse(argv)
    output = Path(args.output_dir)
    if args.redraw:
        payload = json.loads((output / "results.json").read_text())
    else:
        payload = measure(args)
        if payload is None:  # not the main process
            return None
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    earlier = json.loads(Path(args.compare).read_text()) if args.compare else None
    (output / "tables.md").write_text(tables(payload, earlier, args.compare_label))
    plot(payload, output / "convergence.png", earlier, args.compare_label)
    print(tables(payload, earlier, args.compare_label))
    print(f"wrote {output / 'results.json'}, {output / 'tables.md'}, {output / 'convergence.png'}")
    return payload


def measure(args) -> dict | None:
    """Every measurement ``args`` asks for; None in processes other than the main one."""
    torch.set_num_threads(args.threads)
    state = process_state()
    model = args.model or embedded_text_to_image_path()
    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(state.device)
    started = time.perf_counter()
    rows = convergence(
        pipe,
        shuffled_training_captions(args.prompts),
        solvers=args.solvers,
        steps=args.steps,
        reference_steps=args.reference_steps,
        guidance_scales=args.guidance,
        batch_size=args.batch_size,
        progress=lambda text: (
            state.is_main_process and print(f"[{time.perf_counter() - started:5.0f} s] {text}", flush=True)
        ),
    )
    name = "the embedded emoji model" if args.model is None else Path(args.model).name
    payload = dict(model=name, arguments=vars(args), convergence=rows)
    if args.prompt_following:  # samples in every process
        payload["prompt_following"] = emoji_prompt_following(pipe, batch_size=args.batch_size, **PROMPT_FOLLOWING_CALL)
    if state.is_main_process:
        if args.bands:
            payload["bands"] = band_rows(pipe)
        if args.stiffness:
            payload["stiffness"] = guidance_stiffness(
                pipe, shuffled_training_captions(8), guidance_scale=max(args.guidance)
            )
    end_processes()
    return payload if state.is_main_process else None


if __name__ == "__main__":
    main()
