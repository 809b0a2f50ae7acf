"""Tune DeepCache for a pipeline: the best setting for a target speedup, FLOP budget or fidelity, with the Pareto front.

    python scripts/tune.py --target-speedup 2                       # the embedded text-to-image model, offline
    python scripts/tune.py --embedded digits --target-speedup 3     # the embedded digits DDPM (DDIM, 50 steps)
    python scripts/tune.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --target-speedup 2 --device cuda

It runs the pipeline uncached on the calibration inputs (prompts with seeds, or seeds alone for an
unconditional model; image-conditioned pipelines get a synthetic picture), measures candidate
settings of every family against that reference (deepcache.tune), re-scores the pick and each
family's best on held-out inputs, prints the pick and writes to --output-dir: result.json (every
point), setting.json (the pick, for TunedSetting.load), front.md (the table) and front.png (the plot).
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)

import deepcache
import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache.embedded import embedded_model_path
from deepcache.embedded.text_to_image import embedded_text_to_image_path
from deepcache.evaluation.examples import (
    MODEL_HELP,
    demo_image,
    demo_mask,
    load_failure,
    model_size,
)
from deepcache.runtime import diffusers_class
from deepcache.tuning.families import FAMILIES

SCHEDULERS = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": (EulerDiscreteScheduler, {}),
}
EMBEDDED = {  # the embedded models: folder, and what they run with unless told otherwise
    "emoji": dict(path=embedded_text_to_image_path, scheduler=None, guidance_scale=5.0, batch_size=4),
    "digits": dict(path=embedded_model_path, scheduler="ddim", guidance_scale=None, batch_size=16),
}
GENERIC_PROMPTS = [
    "a photo of a cat",
    "a red car in the rain",
    "a bowl of fruit on a table",
    "a lighthouse at sunset",
    "a portrait of an old man",
    "a city street at night",
    "a snowy mountain",
    "a robot reading a book",
]


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--model", help=f"{MODEL_HELP} (default: the embedded model)")
    parser.add_argument(
        "--embedded",
        choices=list(EMBEDDED),
        default="emoji",
        help="which embedded model, without --model (default emoji)",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--target-speedup", type=float, help="the most faithful setting with at least this FLOP speedup (default 2)"
    )
    target.add_argument("--max-flops", type=float, help="... with at most these U-Net FLOPs per call")
    target.add_argument("--min-fidelity", type=float, help="the fastest setting scoring at least this (--metric)")
    parser.add_argument("--metric", choices=["psnr", "ssim"], default="psnr")
    parser.add_argument("--steps", type=int, default=50, help="steps of the calls to tune (default 50)")
    parser.add_argument(
        "--scheduler", choices=list(SCHEDULERS), help="scheduler (default: the model's; DDIM for digits)"
    )
    parser.add_argument(
        "--guidance-scale", type=float, help="classifier-free guidance (default: 5 for emoji, the pipeline's otherwise)"
    )
    parser.add_argument(
        "--prompt",
        action="append",
        help="calibration prompt (repeatable; default: training captions / generic prompts)",
    )
    parser.add_argument("--inputs", type=int, default=8, help="calibration inputs: images per setting (default 8)")
    parser.add_argument(
        "--held-out", type=int, default=8, help="held-out inputs (other prompts and seeds; 0: no check; default 8)"
    )
    parser.add_argument("--batch-size", type=int, help="images per pipeline call (default 4; 16 for digits)")
    parser.add_argument(
        "--families",
        nargs="+",
        choices=FAMILIES,
        metavar="FAMILY",
        help=f"families to try (default all: {', '.join(FAMILIES)})",
    )
    parser.add_argument("--max-evaluations", type=int, default=60)
    parser.add_argument("--time-budget", type=float, help="seconds after which no further setting is measured")
    parser.add_argument(
        "--measure-time", action="store_true", help="also time the front against the reference (interleaved)"
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's; 1 for steady timings)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", default="tuning", help="where the report goes (default tuning/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.target_speedup is None and args.max_flops is None and args.min_fidelity is None:
        args.target_speedup = 2.0
    if min(args.steps, args.inputs) < 1 or args.held_out < 0:
        parser.error("--steps and --inputs must be at least 1, --held-out at least 0")
    return args


def load_pipeline(args):
    """The DeepCache pipeline for --model (any pipeline deepcache has a subclass for), or the embedded model."""
    defaults = (
        EMBEDDED[args.embedded] if args.model is None else dict(scheduler=None, guidance_scale=None, batch_size=4)
    )
    source = defaults["path"]() if args.model is None else args.model
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    try:
        class_name = DiffusionPipeline.load_config(source)["_class_name"]
        cls = getattr(deepcache, f"DeepCache{class_name}", None)
        if cls is None:
            supported = sorted(
                diffusers_class(getattr(deepcache, n)).__name__ for n in deepcache.__all__ if n.endswith("Pipeline")
            )
            raise SystemExit(f"error: deepcache has no subclass of {class_name}; it tunes {', '.join(supported)}.")
        pipe = cls.from_pretrained(source, dtype=dtype).to(args.device)
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: cannot load --model {source!r}: {load_failure(error)}") from None
    scheduler = args.scheduler or defaults["scheduler"]
    if scheduler is not None:
        scheduler_class, extra = SCHEDULERS[scheduler]
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **extra)
    args.guidance_scale = args.guidance_scale if args.guidance_scale is not None else defaults["guidance_scale"]
    args.batch_size = args.batch_size or defaults["batch_size"]
    return pipe


def prompts_for(args, count: int, offset: int) -> list[str]:
    """``count`` prompts from --prompt, else the embedded model's training captions (seeded order), else generic
    ones."""
    if args.prompt:
        pool = args.prompt
    elif args.model is None and args.embedded == "emoji":
        from deepcache.embedded.emoji import load_catalog

        emoji, held_out = load_catalog()
        captions = [e.name for e, out in zip(emoji, held_out) if not out]
        pool = [captions[i] for i in torch.randperm(len(captions), generator=torch.Generator().manual_seed(0)).tolist()]
    else:
        pool = GENERIC_PROMPTS
    return [pool[(offset + i) % len(pool)] for i in range(count)]


def calls_for(pipe, args, count: int, first_seed: int) -> list[dict]:
    """Pipeline calls of ``args.batch_size`` images covering ``count`` inputs, each image its own seed."""
    parameters = inspect.signature(diffusers_class(type(pipe)).__call__).parameters
    text = "prompt" in parameters
    prompts = prompts_for(args, count, first_seed) if text else None
    calls = []
    for start in range(0, count, args.batch_size):
        size = min(args.batch_size, count - start)
        generators = [torch.Generator().manual_seed(first_seed + start + i) for i in range(size)]
        call = dict(generator=generators)
        if text:
            call["prompt"] = prompts[start : start + size]
        elif "batch_size" in parameters:
            call["batch_size"] = size
        if "image" in parameters:  # img2img, inpainting, SVD: a synthetic picture (one per call)
            height, width = model_size(pipe, video="num_frames" in parameters)
            call["image"] = demo_image(width, height)
            if "mask_image" in parameters:
                call["mask_image"] = demo_mask(width, height)
            if not text:
                call["generator"] = generators[0]
        if args.guidance_scale is not None and "guidance_scale" in parameters:
            call["guidance_scale"] = args.guidance_scale
        calls.append(call)
    return calls


def main(argv=None) -> deepcache.TuningResult:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args)
    calibration = calls_for(pipe, args, args.inputs, first_seed=0)
    held_out = calls_for(pipe, args, args.held_out, first_seed=10**6) if args.held_out else None
    start = time.perf_counter()
    result = deepcache.tune(
        pipe,
        calls=calibration,
        held_out_calls=held_out,
        target_speedup=args.target_speedup,
        max_flops=args.max_flops,
        min_fidelity=args.min_fidelity,
        metric=args.metric,
        families=args.families,
        max_evaluations=args.max_evaluations,
        time_budget=args.time_budget,
        measure_time=args.measure_time,
        progress=not args.quiet,
        num_inference_steps=args.steps,
    )
    seconds = time.perf_counter() - start
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    result.save(output / "result.json")
    if result.chosen is not None:
        result.chosen.setting.save(output / "setting.json")
    (output / "front.md").write_text(result.table())
    result.plot(output / "front.png")
    (output / "arguments.json").write_text(json.dumps({**vars(args), "seconds": seconds}, indent=1) + "\n")
    print(result)
    print(f"wrote {output / 'result.json'}, setting.json, front.md, front.png ({seconds:.0f} s)")
    return result


if __name__ == "__main__":
    main()
