"""The original CompVis class-conditional LDM checkpoint (``cin256-v2``) as a diffusers pipeline.

The checkpoint is the state dict of ``ldm.models.diffusion.ddpm.LatentDiffusion`` with
``cond_stage_key: class_label``: the U-Net under ``model.diffusion_model.``, the VQ first stage
under ``first_stage_model.``, the class table at ``cond_stage_model.embedding.weight``. The U-Net's
and the first stage's keys are renamed by diffusers' own single-file converters (one place moves
when diffusers does); what they do not cover (the codebook, the class table, the configs, the DDIM
schedule) is here. ``scripts/convert_ldm_class_conditional.py`` is the command line.
"""

from __future__ import annotations

import os
import pickle

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel, VQModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)

from .class_embedder import ClassEmbedder
from .pipeline import LDMClassConditionalPipeline

# CompVis' configs/latent-diffusion/cin256-v2.yaml, the parts the conversion reads.
CIN256_V2 = {
    "model": {
        "params": {
            "linear_start": 0.0015,
            "linear_end": 0.0195,
            "timesteps": 1000,
            "image_size": 64,
            "channels": 3,
            "cond_stage_key": "class_label",
            "conditioning_key": "crossattn",
            "unet_config": {
                "params": {
                    "image_size": 64,
                    "in_channels": 3,
                    "out_channels": 3,
                    "model_channels": 192,
                    "attention_resolutions": [8, 4, 2],
                    "num_res_blocks": 2,
                    "channel_mult": [1, 2, 3, 5],
                    "num_heads": 1,
                    "use_spatial_transformer": True,
                    "transformer_depth": 1,
                    "context_dim": 512,
                }
            },
            "first_stage_config": {
                "params": {
                    "embed_dim": 3,
                    "n_embed": 8192,
                    "ddconfig": {
                        "double_z": False,
                        "z_channels": 3,
                        "resolution": 256,
                        "in_channels": 3,
                        "out_ch": 3,
                        "ch": 128,
                        "ch_mult": [1, 2, 4],
                        "num_res_blocks": 2,
                        "attn_resolutions": [],
                    },
                }
            },
            "cond_stage_config": {"params": {"embed_dim": 512, "n_classes": 1001, "key": "class_label"}},
        }
    }
}

_UNET_PREFIX, _FIRST_STAGE_PREFIX, _CLASS_TABLE = (
    "model.diffusion_model.",
    "first_stage_model.",
    "cond_stage_model.embedding.weight",
)


def load_compvis_checkpoint(path: str | os.PathLike, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """The state dict in a ``.ckpt``/``.pt``/``.pth`` (a Lightning checkpoint or a bare state dict) or ``.safetensors``
    file.

    Pickled files load with ``weights_only=True`` (tensors and plain containers, no code runs);
    ``weights_only=False`` unpickles anything, running what the file says: only for files you trust.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`checkpoint`: no file at {path!r}.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"`checkpoint` {path!r} holds more than tensors, so it does not load with weights_only=True "
            f"({str(error).splitlines()[0]}). "
            "If you trust the file, pass weights_only=False (the script's --unsafe-pickle)."
        ) from None
    state_dict = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f"`checkpoint` {path!r} holds no state dict (a dict of tensors, or one under 'state_dict').")
    return state_dict


def convert_ldm_class_conditional(
    checkpoint: dict[str, torch.Tensor],
    original_config: dict | None = None,
    extract_ema: bool = False,
    null_class: int | None = None,
) -> LDMClassConditionalPipeline:
    """A plain :class:`LDMClassConditionalPipeline` with the weights of a CompVis class-conditional LDM.

    Args:
        checkpoint (`dict`): the ``LatentDiffusion`` state dict (``load_compvis_checkpoint(path)``).
        original_config (`dict`, *optional*): the parsed CompVis YAML config; ``CIN256_V2`` if not given.
        extract_ema (`bool`, defaults to `False`): the U-Net's EMA weights (``model_ema.*``) instead of its
            weights (the DeepCache paper's sampling script uses the latter).
        null_class (`int`, *optional*): the class guidance uses as unconditional; the table's last row
            (1000 of 1001 for ``cin256-v2``) if not given.
    """
    params = (original_config or CIN256_V2)["model"]["params"]  # read only: the configs built from it are new dicts
    _check_config(params, checkpoint)
    unet_config = _unet_config(params)
    unet = _load(
        UNet2DConditionModel,
        unet_config,
        convert_ldm_unet_checkpoint(checkpoint, unet_config, extract_ema=extract_ema),
        "U-Net",
    )
    vqvae_config = _vqvae_config(params)
    vqvae_weights = convert_ldm_vae_checkpoint(checkpoint, vqvae_config)
    vqvae_weights["quantize.embedding.weight"] = checkpoint[_FIRST_STAGE_PREFIX + "quantize.embedding.weight"]
    vqvae = _load(VQModel, vqvae_config, vqvae_weights, "first stage")
    table = checkpoint[_CLASS_TABLE]
    class_embedder = ClassEmbedder(
        num_classes=table.shape[0],
        embedding_dim=table.shape[1],
        null_class=table.shape[0] - 1 if null_class is None else null_class,
    )
    class_embedder.embedding.weight.data.copy_(table)
    scheduler = DDIMScheduler(
        num_train_timesteps=params.get("timesteps", 1000),
        beta_start=params.get("linear_start", 1e-4),  # CompVis' DDPM defaults
        beta_end=params.get("linear_end", 2e-2),
        beta_schedule="scaled_linear",  # CompVis' "linear": linspace over sqrt(beta), squared
        prediction_type="v_prediction" if params.get("parameterization") == "v" else "epsilon",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # CompVis' DDIM visits timesteps 1, 1 + 1000 / T, ...
    )
    return LDMClassConditionalPipeline(
        vqvae=vqvae.eval(), unet=unet.eval(), class_embedder=class_embedder.eval(), scheduler=scheduler
    )


def _check_config(params: dict, checkpoint: dict) -> None:
    """What this conversion supports, said before any weight moves."""
    if params.get("cond_stage_key") != "class_label" or params.get("conditioning_key") != "crossattn":
        raise ValueError(
            "`original_config` must describe a class-conditional LDM (cond_stage_key: class_label, conditioning_key: "
            "crossattn), "
            f"but it has cond_stage_key={params.get('cond_stage_key')!r}, "
            f"conditioning_key={params.get('conditioning_key')!r}."
        )
    if params.get("beta_schedule", "linear") != "linear":
        raise ValueError(
            "`original_config`: only CompVis' 'linear' beta_schedule converts to DDIM's 'scaled_linear', not "
            f"{params['beta_schedule']!r}."
        )
    if params.get("first_stage_config", {}).get("params", {}).get("ddconfig", {}).get("attn_resolutions"):
        raise ValueError(
            "`original_config`: a first stage with attention inside its levels (attn_resolutions) has no diffusers "
            "VQModel equivalent."
        )
    if not params.get("unet_config", {}).get("params", {}).get("use_spatial_transformer"):
        raise ValueError(
            "`original_config`: the U-Net must use spatial transformers (use_spatial_transformer: true) to read the "
            "class token."
        )
    missing = [
        key for key in (_CLASS_TABLE, _FIRST_STAGE_PREFIX + "quantize.embedding.weight") if key not in checkpoint
    ]
    if missing or not any(key.startswith(_UNET_PREFIX) for key in checkpoint):
        raise ValueError(
            "`checkpoint` is not a CompVis class-conditional LDM state dict: it lacks "
            f"{missing or [_UNET_PREFIX + '*']}."
        )


def _unet_config(params: dict) -> dict:
    """The ``UNet2DConditionModel`` config of CompVis' ``UNetModel`` with spatial transformers."""
    unet = params["unet_config"]["params"]
    levels = len(unet["channel_mult"])
    attends = [2**level in unet["attention_resolutions"] for level in range(levels)]  # at downsampling factor 2**level
    heads = unet.get("num_heads", -1)
    if heads == -1:  # CompVis gives either the heads or the channels per head
        heads = [unet["model_channels"] * mult // unet["num_head_channels"] for mult in unet["channel_mult"]]
    return {
        "sample_size": unet["image_size"],
        "in_channels": unet["in_channels"],
        "out_channels": unet["out_channels"],
        "layers_per_block": unet["num_res_blocks"],
        "block_out_channels": [unet["model_channels"] * mult for mult in unet["channel_mult"]],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attends],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)],
        "cross_attention_dim": unet["context_dim"],
        "attention_head_dim": heads,  # diffusers' name for the number of heads in this U-Net
        "transformer_layers_per_block": unet.get("transformer_depth", 1),
        "use_linear_projection": unet.get("use_linear_in_transformer", False),
    }


def _vqvae_config(params: dict) -> dict:
    """The ``VQModel`` config of CompVis' ``VQModelInterface`` first stage."""
    first_stage = params["first_stage_config"]["params"]
    dd = first_stage["ddconfig"]
    return {
        "in_channels": dd["in_channels"],
        "out_channels": dd["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * len(dd["ch_mult"]),
        "up_block_types": ["UpDecoderBlock2D"] * len(dd["ch_mult"]),
        "block_out_channels": [dd["ch"] * mult for mult in dd["ch_mult"]],
        "layers_per_block": dd["num_res_blocks"],
        "latent_channels": dd["z_channels"],
        "num_vq_embeddings": first_stage["n_embed"],
        "vq_embed_dim": first_stage["embed_dim"],
        "sample_size": dd["resolution"],
        "scaling_factor": params.get("scale_factor", 1.0),
    }


def _load(model_class: type, config: dict, weights: dict, name: str) -> torch.nn.Module:
    """A ``model_class(**config)`` holding ``weights``: every parameter present, of its shape, none left over.
    Built on the meta device, so no random initialisation runs for weights the checkpoint replaces."""
    with torch.device("meta"):
        model = model_class(**config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    problems = [
        f"{key} is {tuple(value.shape)}, not {expected[key]}"
        for key, value in weights.items()
        if key in expected and tuple(value.shape) != expected[key]
    ]
    problems += [f"missing {key}" for key in expected if key not in weights]
    problems += [f"unexpected {key}" for key in weights if key not in expected]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(
            f"`checkpoint` does not match the configured {name}: {'; '.join(problems[:3])}{more}. Is `original_config` "
            "the checkpoint's?"
        )
    model.load_state_dict(weights, assign=True)
    return model
