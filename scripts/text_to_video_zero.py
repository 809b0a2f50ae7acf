"""Text2Video-Zero (SD 1.5 / 2.1): baseline, then DeepCache (interval 3, branch 1, uniform), each of its three loops
cached on its own.

    python scripts/text_to_video_zero.py --prompt "a panda is playing guitar on times square"   # a GIF: baseline
    above, DeepCache below

t0 and t1 (where the first frame's latents are copied to the others and warped) sit at 88 % and 94 %
of the steps, as the pipeline's 44 and 47 of 50.
"""

import numpy as np
import torch
from PIL import Image

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheTextToVideoZeroPipeline
from deepcache.evaluation.examples import (
    caching_setting,
    compare_with_setting,
    describe,
    load,
    model_size,
    script_arguments,
)

MODELS = {"sd1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd2.1": "stabilityai/stable-diffusion-2-1"}


def motion_times(steps: int) -> tuple[int, int]:
    """``(t0, t1)`` for ``steps`` steps: (44, 47) at 50, scaled, and valid (``t0 < t1 < steps``) down to two steps."""
    t1 = min(steps - 1, round(0.94 * steps))
    return min(t1 - 1, round(0.88 * steps)), t1


def main(argv=None):
    parser = script_arguments(__doc__.splitlines()[0], "sd1.5", 50, "text_to_video_zero.gif")
    parser.add_argument("--prompt", default="a panda is playing guitar on times square")
    parser.add_argument("--frames", type=int, default=8, help="video length in frames (default 8)")
    parser.add_argument(
        "--no-safety-checker",
        action="store_true",
        help="load without the safety checker (Text2Video-Zero requires one, or this, for checkpoints saved "
        "without it)",
    )
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (Text2Video-Zero needs t0 < t1 < steps)")

    without = (
        dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        if args.no_safety_checker
        else {}
    )
    pipe = load(DeepCacheTextToVideoZeroPipeline, MODELS.get(args.model, args.model), args.device, **without)
    height, width = model_size(pipe)
    setting = caching_setting(pipe.deepcache_defaults, args)
    print(f"DeepCache: {describe(setting)}, per loop; {args.frames} frames, {width}x{height}")

    def generate(steps, **caching):
        generator = torch.Generator(args.device).manual_seed(args.seed)
        t0, t1 = motion_times(steps)
        frames = pipe(
            args.prompt,
            video_length=args.frames,
            height=height,
            width=width,
            num_inference_steps=steps,
            t0=t0,
            t1=t1,
            generator=generator,
            **caching,
        ).images
        return [[Image.fromarray((np.asarray(frame) * 255).round().astype(np.uint8)) for frame in frames]]

    compare_with_setting(generate, setting, args, video=True)


if __name__ == "__main__":
    main()
