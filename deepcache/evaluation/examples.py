"""What the example scripts in ``scripts/`` share: loading, a timed comparison, pictures to look at.

Each script loads a pipeline (a hub id or a local ``save_pretrained`` directory), then
:func:`compare` runs the baseline and DeepCache from the same seed, prints both wall times and
the speedup, and saves the two outputs side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import statistics
import textwrap
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from ..runtime import FewStepsWarning

MODEL_HELP = "hub id or local directory saved with save_pretrained"


def script_arguments(
    description: str, default_model: str, default_steps: int, default_output: str
) -> argparse.ArgumentParser:
    """The arguments every script takes; scripts add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=default_model, help=f"{MODEL_HELP} (default {default_model})")
    parser.add_argument("--steps", type=int, default=default_steps, help=f"denoising steps (default {default_steps})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache-interval", type=int, help="DeepCache interval N (default: the model's recommended setting)"
    )
    parser.add_argument("--cache-branch-id", type=int, help="cached branch, helper numbering (default: the model's)")
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=2,
        help="untimed warm-up run of each with this many steps (0: none; default 2)",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs of each, interleaved; the median is reported (default 2)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--output",
        default=default_output,
        help=f"where to save baseline and DeepCache side by side (default {default_output})",
    )
    return parser


def caching_setting(defaults, args: argparse.Namespace) -> dict:
    """The pipeline's recommended DeepCache setting, with the interval or branch given on the command line."""
    setting = defaults.as_kwargs()
    if args.cache_interval is not None:
        setting["cache_interval"] = args.cache_interval
    if args.cache_branch_id is not None:
        setting.update(cache_branch_id=args.cache_branch_id, cache_layer_id=None, cache_block_id=None)
    return setting


def describe(setting: dict) -> str:
    """A DeepCache setting in words, e.g. ``interval 5, branch 1, non-uniform (pow 1.4, center 0.3 T)``."""
    branch = setting.get("cache_branch_id")
    if branch is None and setting.get("cache_layer_id") is not None:
        branch = f"(layer {setting['cache_layer_id']}, block {setting['cache_block_id']})"
    text = f"interval {setting['cache_interval']}, branch {branch if branch is not None else 'default'}"
    if setting.get("uniform", True):
        return text + ", uniform"
    pow_, center = setting.get("pow") or 1.4, setting.get("center")
    return text + f", non-uniform (pow {pow_}, center {'0.3 T' if center is None else center})"


def load(pipeline_class, model: str, device: str, **kwargs):
    """``pipeline_class.from_pretrained(model)`` on ``device``; weights that cannot be loaded end the script
    with one line: the loader's own reason, and what to do."""
    path = Path(model).expanduser()
    if not path.exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise SystemExit(
            f"error: --model {model!r} is not a directory; pass a folder written by save_pretrained, or a hub id such "
            "as 'org/name'."
        )
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        pipe = pipeline_class.from_pretrained(str(path) if path.exists() else model, dtype=dtype, **kwargs)
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: cannot load --model {model!r}: {load_failure(error)}") from None
    return pipe.to(device)


def load_failure(error: Exception) -> str:
    """The first line of a loader's error, whole, followed by what the user can do about it."""
    reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    reason = re.sub(r"\s*Please check out the root cause in the stacktrace above\.?", "", reason).rstrip(
        "."
    )  # none is shown
    return (
        f"{reason}. Pass a hub id you can download (network, and `hf auth login` for gated models) "
        "or a local save_pretrained folder."
    )


def model_size(pipe, video: bool = False, height: int | None = None, width: int | None = None) -> tuple[int, int]:
    """``(height, width)`` a script generates: those given, else the U-Net's configured sample size in pixels.

    SVD's config says 768 while SVD and SVD-XT were trained (and diffusers defaults) at 576x1024, so
    for ``video`` that 9:16 frame is scaled to the config's size: 576x1024 for SVD, small for a tiny model.
    """
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    default = (side, side)
    if video:
        multiple = pipe.vae_scale_factor * 2 ** (
            len(pipe.unet.config.block_out_channels) - 1
        )  # every level halves evenly
        default = tuple(max(multiple, round(pixels * side / 768 / multiple) * multiple) for pixels in (576, 1024))
    return height or default[0], width or default[1]


@contextlib.contextmanager
def step_progress(pipe, total: int, description: str):
    """A progress bar over ``pipe``'s U-Net calls, for phases made of several pipeline runs."""
    with tqdm(total=total, desc=description, unit="step") as bar:

        def count(*_) -> None:  # a forward hook that returns nothing keeps the U-Net's output
            bar.update()

        handle = pipe.unet.register_forward_hook(count)
        try:
            yield bar
        finally:
            handle.remove()


def compare_with_setting(
    generate: Callable[..., list], setting: dict, args: argparse.Namespace, video: bool = False
) -> float:
    """:func:`compare` of ``generate(steps)`` against ``generate(steps, **setting)`` with the script's ``--steps``,
    ``--warmup-steps``, ``--output`` and ``--repeats``."""
    deepcache = functools.partial(generate, **setting)
    return compare(generate, deepcache, args.steps, args.warmup_steps, args.output, video=video, repeats=args.repeats)


def compare(
    baseline: Callable[[int], list],
    deepcache: Callable[[int], list],
    steps: int,
    warmup_steps: int,
    output: str,
    video: bool = False,
    repeats: int = 2,
) -> float:
    """Times ``baseline(steps)`` and ``deepcache(steps)`` ``repeats`` times, interleaved, prints the medians
    and their ratio, saves both outputs; returns the speedup.

    Interleaving and the median keep one stall of the machine from deciding the result. Each
    callable returns a list of PIL images, or for ``video`` a list of frame lists.
    """
    if repeats < 1:
        raise ValueError(f"`repeats` must be at least 1, but got {repeats}.")
    if warmup_steps:
        with warnings.catch_warnings():  # a short warm-up is few steps on purpose
            warnings.simplefilter("ignore", FewStepsWarning)
            baseline(warmup_steps), deepcache(warmup_steps)
    (base_images, cache_images), (base_seconds, cache_seconds) = interleaved(
        [(baseline, steps), (deepcache, steps)], repeats
    )
    speedup = base_seconds / cache_seconds
    print(f"baseline:  {base_seconds:.2f} s (median of {repeats}, interleaved)")
    print(f"DeepCache: {cache_seconds:.2f} s (median of {repeats})")
    print(f"speedup:   {speedup:.2f}x")
    print(f"PSNR of DeepCache against the baseline: {psnr(_pixels(base_images), _pixels(cache_images)):.1f} dB")
    labels = (f"baseline {base_seconds:.2f} s", f"DeepCache {cache_seconds:.2f} s ({speedup:.2f}x)")
    if video:
        save_videos_side_by_side(base_images, cache_images, labels, output)
    else:
        side_by_side([base_images, cache_images], labels).save(output)
    print(f"saved {output}: top baseline, bottom DeepCache")
    return speedup


def interleaved(runs: Sequence[tuple], repeats: int) -> tuple[list, list[float]]:
    """Calls each ``(function, *args)`` of ``runs`` ``repeats`` times, interleaved so that drifts in the
    machine's speed hit every run alike; returns each one's last output and its median seconds."""
    outputs, seconds = [None] * len(runs), [[] for _ in runs]
    for _ in range(repeats):
        for index, (function, *args) in enumerate(runs):
            outputs[index], elapsed = timed(function, *args)
            seconds[index].append(elapsed)
    return outputs, [statistics.median(times) for times in seconds]


def timed(function: Callable, *args) -> tuple:
    """``(function(*args), seconds)``, with the GPU synchronised before and after."""
    _synchronize()
    start = time.perf_counter()
    result = function(*args)
    _synchronize()
    return result, time.perf_counter() - start


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _pixels(images: list) -> np.ndarray:
    flat = [frame for item in images for frame in (item if isinstance(item, (list, tuple)) else [item])]
    return np.stack([np.asarray(image.convert("RGB"), dtype=np.float64) / 255 for image in flat])


def psnr(reference: np.ndarray, other: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1]; infinite when they are equal."""
    mse = float(np.mean((reference - other) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def side_by_side(rows: Sequence[Sequence[Image.Image]], labels: Sequence[str], longest: int = 128) -> Image.Image:
    """One labelled row of images per entry of ``rows``, small images scaled up (to about ``longest`` pixels) to be
    seen."""
    width, height = rows[0][0].size
    scale = max(1, longest // max(width, height))
    width, height, label_height = width * scale, height * scale, 14
    grid = Image.new("RGB", (width * max(len(r) for r in rows), (height + label_height) * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (row, label) in enumerate(zip(rows, labels)):
        top = r * (height + label_height)
        draw.text((2, top + 1), label, fill="black")
        for c, image in enumerate(row):
            grid.paste(image.convert("RGB").resize((width, height), Image.NEAREST), (c * width, top + label_height))
    return grid


def captioned_grid(
    rows: Sequence[Sequence[Image.Image]], labels: Sequence[str], captions: Sequence[str], longest: int = 96
) -> Image.Image:
    """``side_by_side`` under a header of column ``captions``, wrapped to the column's width."""
    body = side_by_side(rows, labels, longest)
    column = body.width // max(len(row) for row in rows)
    wrapped = [
        textwrap.wrap(caption, max(1, column // 6))[:3] for caption in captions
    ]  # PIL's default font: ~6 px a character
    header = 4 + 11 * max(len(lines) for lines in wrapped)
    grid = Image.new("RGB", (body.width, header + body.height), "white")
    draw = ImageDraw.Draw(grid)
    for c, lines in enumerate(wrapped):
        for n, line in enumerate(lines):
            draw.text((c * column + 2, 2 + 11 * n), line, fill="black")
    grid.paste(body, (0, header))
    return grid


def save_videos_side_by_side(baseline: list, deepcache: list, labels: Sequence[str], path: str, fps: int = 7) -> None:
    """A GIF whose frames show the first baseline video's frame above the first DeepCache video's."""
    frames = [side_by_side([[a], [b]], labels) for a, b in zip(baseline[0], deepcache[0])]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000 // fps, loop=0)


def demo_image(width: int, height: int) -> Image.Image:
    """A synthetic input picture (sky, sun, hills), so image-conditioned scripts need no download."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width]).reshape(2, 1, 1)
    picture = np.stack([0.35 + 0.4 * y, 0.55 + 0.3 * y, 0.95 - 0.2 * y], axis=-1)
    sun = (x - 0.7) ** 2 + (y - 0.3) ** 2 < 0.01
    picture[sun] = (1.0, 0.85, 0.3)
    hills = y > 0.65 + 0.08 * np.sin(6 * x)
    picture[hills] = np.stack([0.2 + 0.1 * x, 0.5 + 0.2 * y, 0.2 * np.ones_like(x)], axis=-1)[hills]
    return Image.fromarray((picture * 255).round().astype(np.uint8))


def demo_mask(width: int, height: int) -> Image.Image:
    """White (to repaint) over the middle of the picture, black elsewhere."""
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    return Image.fromarray(mask)
