"""AnimateDiff (SD 1.5 + motion modules): baseline, then DeepCache (interval 3, branch 0, uniform); a GIF of both.

    python scripts/animatediff.py --prompt "a rocket lifting off, cinematic"   # SD 1.5 + motion adapter v1-5-2
    python scripts/animatediff.py --model DIR                                  # a saved AnimateDiff pipeline

``--model`` is an SD 1.5 checkpoint (the motion adapter ``--motion-adapter`` is added to it) or a
saved AnimateDiff pipeline folder, which carries its own motion modules. A cached step skips the
deep blocks with their motion modules; the shallow ones run on every step.
"""

from pathlib import Path

import torch

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheAnimateDiffPipeline
from deepcache.evaluation.examples import (
    caching_setting,
    compare_with_setting,
    describe,
    load,
    model_size,
    script_arguments,
)

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"


def has_motion_modules(model: str) -> bool:
    """Whether ``model`` is a saved AnimateDiff pipeline (its folder holds the motion adapter)."""
    return (Path(model).expanduser() / "motion_adapter").is_dir()


def main(argv=None):
    parser = script_arguments(__doc__.splitlines()[0], SD15, 25, "animatediff.gif")
    parser.add_argument("--prompt", default="a rocket lifting off into the sky, cinematic, high quality")
    parser.add_argument("--frames", type=int, default=16, help="frames (default 16, the motion modules' training)")
    parser.add_argument("--motion-adapter", default=MOTION_ADAPTER, help=f"hub id or folder (default {MOTION_ADAPTER})")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")

    extra = {}
    if not has_motion_modules(args.model):
        from diffusers import MotionAdapter

        dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
        extra["motion_adapter"] = MotionAdapter.from_pretrained(args.motion_adapter, dtype=dtype)
    pipe = load(DeepCacheAnimateDiffPipeline, args.model, args.device, **extra)
    height, width = model_size(pipe)
    setting = caching_setting(pipe.deepcache_defaults, args)
    print(f"DeepCache: {describe(setting)}; {args.frames} frames, {width}x{height}")

    def generate(steps, **caching):
        generator = torch.Generator(args.device).manual_seed(args.seed)
        output = pipe(
            args.prompt,
            num_frames=args.frames,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=args.guidance_scale,
            generator=generator,
            output_type="pil",
            **caching,
        )
        return [list(output.frames[0])]

    compare_with_setting(generate, setting, args, video=True)


if __name__ == "__main__":
    main()
