"""Stable Video Diffusion image-to-video: baseline, then DeepCache (interval 3, branch 1, uniform).

    python scripts/stable_video_diffusion.py --image photo.png    # a GIF: baseline above, DeepCache below

Frames are 576x1024 on SVD and SVD-XT, and that 9:16 frame scaled to the model's configured size on
others (a tiny model gets tiny frames); --height/--width override.
"""

import torch
from PIL import Image

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheStableVideoDiffusionPipeline
from deepcache.evaluation.examples import (
    caching_setting,
    compare_with_setting,
    demo_image,
    describe,
    load,
    model_size,
    script_arguments,
)


def main(argv=None):
    parser = script_arguments(
        __doc__.splitlines()[0], "stabilityai/stable-video-diffusion-img2vid-xt", 25, "stable_video_diffusion.gif"
    )
    parser.add_argument("--image", help="conditioning image (default: a synthetic landscape)")
    parser.add_argument(
        "--height", type=int, help="frame height (default: 576 on SVD/SVD-XT, scaled to the model's size on others)"
    )
    parser.add_argument(
        "--width", type=int, help="frame width (default: 1024 on SVD/SVD-XT, scaled to the model's size on others)"
    )
    parser.add_argument("--num-frames", type=int, help="frames to generate (default: the model's)")
    parser.add_argument("--decode-chunk-size", type=int, default=8)
    args = parser.parse_args(argv)

    pipe = load(DeepCacheStableVideoDiffusionPipeline, args.model, args.device)
    height, width = model_size(pipe, video=True, height=args.height, width=args.width)
    image = Image.open(args.image).convert("RGB") if args.image else demo_image(width, height)
    image = image.resize((width, height))
    setting = caching_setting(pipe.deepcache_defaults, args)
    print(f"DeepCache: {describe(setting)}; {width}x{height}")

    def generate(steps, **caching):
        generator = torch.Generator(args.device).manual_seed(args.seed)
        return pipe(
            image,
            height=height,
            width=width,
            num_frames=args.num_frames,
            decode_chunk_size=args.decode_chunk_size,
            num_inference_steps=steps,
            generator=generator,
            **caching,
        ).frames

    compare_with_setting(generate, setting, args, video=True)


if __name__ == "__main__":
    main()
