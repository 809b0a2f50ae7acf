"""Converts CompVis' class-conditional LDM (LDM-4-G, ImageNet ``cin256-v2``) to a diffusers folder.

    python scripts/convert_ldm_class_conditional.py --checkpoint cin256-v2/model.ckpt --output ldm-cin256-v2
    python scripts/convert_ldm_class_conditional.py --checkpoint model.ckpt --config cin256-v2.yaml --extract-ema

The checkpoint is https://ommer-lab.com/files/latent-diffusion/cin.zip's model.ckpt (the state dict
of ``LatentDiffusion`` with ``cond_stage_key: class_label``). Without ``--config`` the conversion uses
cin256-v2.yaml's values (``deepcache.CIN256_V2``). The folder loads with
``deepcache.DeepCacheLDMClassConditionalPipeline.from_pretrained(folder)`` (or the plain
``LDMClassConditionalPipeline``); ``scripts/ldm_class_conditional.py --model folder`` samples from it.
"""

import argparse

import yaml

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import convert_ldm_class_conditional, load_compvis_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the CompVis .ckpt (or .safetensors) file")
    parser.add_argument("--config", help="the CompVis YAML config (default: cin256-v2.yaml's values)")
    parser.add_argument(
        "--extract-ema",
        action="store_true",
        help="the U-Net's EMA weights instead of its weights (the DeepCache paper samples with the latter)",
    )
    parser.add_argument(
        "--unsafe-pickle",
        action="store_true",
        help="unpickle a checkpoint that holds more than tensors (runs code from the file: only for files you trust)",
    )
    parser.add_argument(
        "--output", default="ldm-cin256-v2", help="the diffusers folder to write (default ldm-cin256-v2)"
    )
    args = parser.parse_args(argv)

    config = None
    if args.config:
        with open(args.config) as file:
            config = yaml.safe_load(file)
    try:
        checkpoint = load_compvis_checkpoint(args.checkpoint, weights_only=not args.unsafe_pickle)
        pipe = convert_ldm_class_conditional(checkpoint, config, extract_ema=args.extract_ema)
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    pipe.save_pretrained(args.output)
    unet, classes = pipe.unet.config, pipe.class_embedder.config
    print(
        f"U-Net {sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.1f} M parameters, "
        f"{len(unet.block_out_channels)} levels {tuple(unet.block_out_channels)}, "
        f"latents {unet.in_channels}x{unet.sample_size}x{unet.sample_size}; {classes.num_classes} classes (null class "
        f"{classes.null_class})"
    )
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
