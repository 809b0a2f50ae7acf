"""Everything the project measures on a GPU, in one command: about 8 minutes on one H200, nothing from the network.

    python scripts/gpu_check.py --original DeepCache-0.1.1-py3-none-any.whl   # on the GPU machine
    python scripts/gpu_check.py --tiny                                        # a dry run on CPU (seconds)

Parts, in order (each skipped, and said so, once ``--time-limit`` has passed):
1. the U-Net denoising loop (DDIM, ``--steps`` steps) of SD 1.5 at 512 px and SDXL at 1024 px (real
   architectures, random weights), ``--dtype``, each batch of ``--batches``: uncached, and DeepCache
   N = 3 and 5 at branches 0 and 1 with reuse and with the linear forecast; peak memory; with
   ``--original`` (the DeepCache 0.1.1 wheel or its helper file) also the original helper on the same
   loop, its speed and its largest difference;
2. the whole pipeline as users call it (``pipe(prompt, cache_interval=..., ...)``, text encoders and
   VAE included, random weights), uncached, reuse and linear at N = 3, branch 0, batch 1;
3. ``torch.compile`` (inductor, modes ``default`` and ``reduce-overhead``, i.e. CUDA graphs) of SD
   1.5's loop, uncached, reuse and linear at N = 3, branch 0.
Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--output-dir``; the GPU machine's own torch is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache.evaluation.benchmark import Row, benchmark, machine, markdown_table, settings_grid
from deepcache.evaluation.benchmark_models import random_pipeline
from deepcache.evaluation.examples import interleaved
from deepcache.evaluation.original import load_original_helper
from deepcache.evaluation.pipeline_timings import compile_seconds
from deepcache.runtime import DeepCacheConfig

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PIPELINE_PROMPT = "a photograph of an astronaut riding a horse"


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--models", nargs="+", default=["sd1.5", "sdxl"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--intervals", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--branches", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", default="fp16", choices=sorted(DTYPES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile-modes", nargs="*", default=["default", "reduce-overhead"])
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    parser.add_argument("--original", help="the DeepCache 0.1.1 wheel or its deepcache.py (no download here)")
    parser.add_argument("--time-limit", type=float, default=420, help="seconds after which parts are skipped")
    parser.add_argument("--output-dir", default="gpu_check")
    parser.add_argument(
        "--tiny", action="store_true", help="dry run: tiny SD-shaped model on CPU, fp32, 4 steps, 1 repeat"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.models, args.batches, args.steps, args.repeats = ["tiny-sd"], [1, 2], 4, 1
        args.dtype, args.device, args.compile_modes, args.compile_backend = "fp32", "cpu", ["default"], "eager"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: no CUDA device; run with --tiny for a CPU dry run")
    started = time.perf_counter()
    dtype = DTYPES[args.dtype]
    original = load_original_helper(args.original) if args.original else None
    report = {
        "machine": machine(args.device, torch.get_num_threads()),
        "arguments": vars(args),
        "loops": [],
        "pipelines": [],
        "compile": [],
    }
    skipped = report["skipped"] = []

    def in_time(part: str) -> bool:
        if time.perf_counter() - started < args.time_limit:
            return True
        skipped.append(part)
        return False

    settings = settings_grid(args.intervals, args.branches, ["uniform"], [None, "linear"])
    for batch in args.batches:  # batch 1 of every model first: the most wanted numbers
        for name in args.models:
            if in_time(f"loop {name} batch {batch}"):
                rows = benchmark(
                    name,
                    settings,
                    steps=args.steps,
                    batch=batch,
                    repeats=args.repeats,
                    device=args.device,
                    dtype=dtype,
                    original=original,
                    progress=False,
                )
                report["loops"].extend(dataclasses.asdict(row) for row in rows)
                _free()
    for name in args.models:
        if in_time(f"pipeline {name}"):
            report["pipelines"].append(pipeline_seconds(name, args, dtype))
            _free()
    compile_model = args.models[0]
    for mode in args.compile_modes:
        for forecast in (None, "linear"):
            if in_time(f"compile {compile_model} {mode} {forecast or 'reuse'}"):
                seconds = compile_seconds(
                    compile_model,
                    DeepCacheConfig(3, 0, cache_forecast=forecast),
                    steps=args.steps,
                    batch=1,
                    repeats=args.repeats,
                    mode=mode,
                    backend=args.compile_backend,
                    device=args.device,
                    dtype=dtype,
                )
                report["compile"].append({"model": compile_model, "mode": mode, "forecast": forecast, **seconds})
                torch._dynamo.reset()
                _free()
    report["seconds"] = time.perf_counter() - started
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return report


def pipeline_seconds(name: str, args, dtype: torch.dtype) -> dict:
    """Median seconds and peak memory of whole pipeline calls: uncached, reuse and linear at N = 3, branch 0."""
    pipe = random_pipeline(name, args.device, dtype)
    variants = {"uncached": {}, "reuse": dict(cache_interval=3, cache_branch_id=0)}
    variants["linear"] = {**variants["reuse"], "cache_forecast": "linear"}
    peaks = {}

    def call(label: str):
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        pipe(PIPELINE_PROMPT, num_inference_steps=args.steps, output_type="np", **variants[label])
        if args.device.startswith("cuda"):
            peaks[label] = torch.cuda.max_memory_allocated() / 2**20

    with torch.no_grad():
        call("uncached")  # warm-up
        _, seconds = interleaved([(call, label) for label in variants], args.repeats)
    return {
        "model": name,
        "steps": args.steps,
        **{f"{label}_s": value for label, value in zip(variants, seconds)},
        **{f"{label}_peak_mb": value for label, value in peaks.items()},
    }


def _free() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def markdown(report: dict) -> str:
    args = report["arguments"]
    lines = [
        f"## GPU check: {report['machine']}, {args['dtype']}, {args['steps']} steps",
        "",
        f"{report.get('seconds', 0):.0f} s in all; skipped (time limit): {', '.join(report['skipped']) or 'nothing'}.",
        "",
        "### U-Net loop",
        "",
    ]
    if report["loops"]:
        rows = [Row(**row) for row in report["loops"]]
        lines += [markdown_table(rows), ""]
    if report["pipelines"]:
        lines += [
            "### Whole pipeline (text encoders, U-Net loop, VAE), batch 1",
            "",
            "| model | uncached | reuse N=3 b0 | linear N=3 b0 | speedup reuse | speedup linear | peak MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in report["pipelines"]:
            peaks = "/".join(
                f"{row[k]:.0f}" for k in ("uncached_peak_mb", "reuse_peak_mb", "linear_peak_mb") if k in row
            )
            lines.append(
                f"| {row['model']} | {row['uncached_s']:.2f} s | {row['reuse_s']:.2f} s | {row['linear_s']:.2f} s | "
                f"{row['uncached_s'] / row['reuse_s']:.2f}x | {row['uncached_s'] / row['linear_s']:.2f}x | "
                f"{peaks or 'n/a'} |"
            )
        lines.append("")
    if report["compile"]:
        lines += [
            f"### torch.compile ({args['compile_backend']}), batch 1, N=3 b0",
            "",
            "| model | mode | forecast | eager uncached | eager cached | compiled uncached | compiled cached | "
            "compile and warm-up |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in report["compile"]:
            lines.append(
                f"| {row['model']} | {row['mode']} | {row['forecast'] or 'reuse'} | {row['eager uncached']:.2f} s | "
                f"{row['eager cached']:.2f} s | {row['compiled uncached']:.2f} s | {row['compiled cached']:.2f} s | "
                f"{row['compile and warm-up']:.0f} s |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
