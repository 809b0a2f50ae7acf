"""LDM-4-G: the CompVis checkpoint converter (on a tiny checkpoint written here in CompVis' key layout),
a hand-computed forward of converted layers, and the class-conditional pipeline's own behaviour."""

import argparse
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from diffusers.callbacks import PipelineCallback
from helpers import script

import deepcache
from deepcache import (
    CIN256_V2,
    DeepCacheLDMClassConditionalPipeline,
    convert_ldm_class_conditional,
    load_compvis_checkpoint,
)
from deepcache.evaluation.benchmark_models import LDM4G_CONFIG
from deepcache.testing import tiny_pipeline

# cin256-v2's structure, shrunk: 3 levels, attention below the first, one head, 2 res blocks;
# a VQ first stage of 2 levels.
TINY_CONFIG = copy.deepcopy(CIN256_V2)
_PARAMS = TINY_CONFIG["model"]["params"]
_PARAMS["unet_config"]["params"].update(
    image_size=8, model_channels=32, attention_resolutions=[4, 2], channel_mult=[1, 2, 2], context_dim=16
)
_PARAMS["first_stage_config"]["params"].update(n_embed=16)
_PARAMS["first_stage_config"]["params"]["ddconfig"].update(resolution=16, ch=32, ch_mult=[1, 2], num_res_blocks=1)
_PARAMS["cond_stage_config"]["params"].update(embed_dim=16, n_classes=11)


def _compvis_unet_shapes(p: dict) -> dict:
    """Every parameter of CompVis' ``UNetModel`` (spatial transformers, one head) and its shape, named as
    ``openaimodel.py`` names them."""
    mc, ctx, shapes = p["model_channels"], p["context_dim"], {}
    temb = 4 * mc

    def conv(name, cout, cin, k):
        shapes.update({f"{name}.weight": (cout, cin, k, k), f"{name}.bias": (cout,)})

    def vector(name, dims, out=None):
        shapes.update(
            {f"{name}.weight": (dims,) if out is None else (out, dims), f"{name}.bias": (dims if out is None else out,)}
        )

    def resblock(name, cin, cout):
        (
            vector(f"{name}.in_layers.0", cin),
            conv(f"{name}.in_layers.2", cout, cin, 3),
            vector(f"{name}.emb_layers.1", temb, cout),
        )
        vector(f"{name}.out_layers.0", cout), conv(f"{name}.out_layers.3", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.skip_connection", cout, cin, 1)

    def transformer(name, ch):
        vector(f"{name}.norm", ch), conv(f"{name}.proj_in", ch, ch, 1), conv(f"{name}.proj_out", ch, ch, 1)
        block = f"{name}.transformer_blocks.0"
        for attn, kv in (("attn1", ch), ("attn2", ctx)):
            shapes.update(
                {
                    f"{block}.{attn}.to_q.weight": (ch, ch),
                    f"{block}.{attn}.to_k.weight": (ch, kv),
                    f"{block}.{attn}.to_v.weight": (ch, kv),
                }
            )
            vector(f"{block}.{attn}.to_out.0", ch, ch)
        vector(f"{block}.ff.net.0.proj", ch, 8 * ch), vector(f"{block}.ff.net.2", 4 * ch, ch)
        for norm in ("norm1", "norm2", "norm3"):
            vector(f"{block}.{norm}", ch)

    vector("time_embed.0", mc, temb), vector("time_embed.2", temb, temb)
    conv("input_blocks.0.0", mc, p["in_channels"], 3)
    chans, ch, ds, index = [mc], mc, 1, 1
    for level, mult in enumerate(p["channel_mult"]):
        for _ in range(p["num_res_blocks"]):
            resblock(f"input_blocks.{index}.0", ch, mult * mc)
            ch = mult * mc
            if ds in p["attention_resolutions"]:
                transformer(f"input_blocks.{index}.1", ch)
            chans.append(ch)
            index += 1
        if level != len(p["channel_mult"]) - 1:
            conv(f"input_blocks.{index}.0.op", ch, ch, 3)
            chans.append(ch)
            index, ds = index + 1, ds * 2
    resblock("middle_block.0", ch, ch), transformer("middle_block.1", ch), resblock("middle_block.2", ch, ch)
    index = 0
    for level, mult in reversed(list(enumerate(p["channel_mult"]))):
        for i in range(p["num_res_blocks"] + 1):
            resblock(f"output_blocks.{index}.0", ch + chans.pop(), mc * mult)
            ch, layer = mc * mult, 1
            if ds in p["attention_resolutions"]:
                transformer(f"output_blocks.{index}.1", ch)
                layer = 2
            if level and i == p["num_res_blocks"]:
                conv(f"output_blocks.{index}.{layer}.conv", ch, ch, 3)
                ds //= 2
            index += 1
    vector("out.0", ch), conv("out.2", p["out_channels"], ch, 3)
    return shapes


def _compvis_vq_shapes(first_stage: dict) -> dict:
    """Every parameter of CompVis' ``VQModelInterface`` (``Encoder``, ``Decoder``, codebook) and its shape."""
    dd, shapes = first_stage["ddconfig"], {}
    ch, mults, blocks, z = dd["ch"], dd["ch_mult"], dd["num_res_blocks"], dd["z_channels"]

    def conv(name, cout, cin, k):
        shapes.update({f"{name}.weight": (cout, cin, k, k), f"{name}.bias": (cout,)})

    def norm(name, c):
        shapes.update({f"{name}.weight": (c,), f"{name}.bias": (c,)})

    def resnet(name, cin, cout):
        (
            norm(f"{name}.norm1", cin),
            conv(f"{name}.conv1", cout, cin, 3),
            norm(f"{name}.norm2", cout),
            conv(f"{name}.conv2", cout, cout, 3),
        )
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cin, 1)

    def mid(name, c):
        resnet(f"{name}.mid.block_1", c, c), resnet(f"{name}.mid.block_2", c, c), norm(f"{name}.mid.attn_1.norm", c)
        for proj in ("q", "k", "v", "proj_out"):
            conv(f"{name}.mid.attn_1.{proj}", c, c, 1)

    conv("encoder.conv_in", ch, dd["in_channels"], 3)
    block_in = ch
    for level, mult in enumerate(mults):
        for b in range(blocks):
            resnet(f"encoder.down.{level}.block.{b}", block_in, ch * mult)
            block_in = ch * mult
        if level != len(mults) - 1:
            conv(f"encoder.down.{level}.downsample.conv", block_in, block_in, 3)
    mid("encoder", block_in), norm("encoder.norm_out", block_in), conv("encoder.conv_out", z, block_in, 3)
    conv("decoder.conv_in", block_in, z, 3), mid("decoder", block_in)
    for level in reversed(range(len(mults))):
        for b in range(blocks + 1):
            resnet(f"decoder.up.{level}.block.{b}", block_in, ch * mults[level])
            block_in = ch * mults[level]
        if level:
            conv(f"decoder.up.{level}.upsample.conv", block_in, block_in, 3)
    norm("decoder.norm_out", block_in), conv("decoder.conv_out", dd["out_ch"], block_in, 3)
    conv("quant_conv", first_stage["embed_dim"], z, 1), conv("post_quant_conv", z, first_stage["embed_dim"], 1)
    shapes["quantize.embedding.weight"] = (first_stage["n_embed"], first_stage["embed_dim"])
    return shapes


def _random(shapes: dict, generator: torch.Generator) -> dict:
    """Weights ~0.2 N(0, 1), norm scales near 1: the activations stay of order one through every layer."""
    return {
        name: (1 if name.endswith("weight") and len(shape) == 1 else 0) + 0.2 * torch.randn(shape, generator=generator)
        for name, shape in shapes.items()
    }


def compvis_checkpoint(config: dict = TINY_CONFIG, seed: int = 0) -> dict:
    """A random ``LatentDiffusion`` state dict in CompVis' key layout for ``config``."""
    generator, params = torch.Generator().manual_seed(seed), config["model"]["params"]
    unet = _random(_compvis_unet_shapes(params["unet_config"]["params"]), generator)
    first_stage = _random(_compvis_vq_shapes(params["first_stage_config"]["params"]), generator)
    classes = params["cond_stage_config"]["params"]
    return {
        **{f"model.diffusion_model.{k}": v for k, v in unet.items()},
        **{f"first_stage_model.{k}": v for k, v in first_stage.items()},
        "cond_stage_model.embedding.weight": torch.randn(
            classes["n_classes"], classes["embed_dim"], generator=generator
        ),
        "betas": torch.zeros(1000),  # the diffusion buffers CompVis saves too; not weights of any component
    }


@pytest.fixture(scope="module")
def converted():
    checkpoint = compvis_checkpoint()
    pipe = convert_ldm_class_conditional(checkpoint, TINY_CONFIG)
    pipe.set_progress_bar_config(disable=True)
    return checkpoint, pipe


def test_every_weight_of_the_checkpoint_lands_in_a_component(converted):
    checkpoint, pipe = converted
    converted_count = sum(
        t.numel() for m in (pipe.unet, pipe.vqvae, pipe.class_embedder) for t in m.state_dict().values()
    )
    assert converted_count == sum(v.numel() for k, v in checkpoint.items() if k != "betas")
    unet = pipe.unet.config
    assert tuple(unet.down_block_types) == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    assert tuple(unet.up_block_types) == ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    assert (
        tuple(unet.block_out_channels) == (32, 64, 64)
        and unet.attention_head_dim == 1
        and unet.cross_attention_dim == 16
    )
    assert pipe.class_embedder.config.null_class == 10 and pipe.vqvae.config.scaling_factor == 1.0
    assert torch.equal(pipe.vqvae.quantize.embedding.weight, checkpoint["first_stage_model.quantize.embedding.weight"])
    assert torch.equal(
        pipe.class_embedder(torch.tensor([3, 10]))[:, 0], checkpoint["cond_stage_model.embedding.weight"][[3, 10]]
    )


def test_the_full_cin256_v2_config_converts_by_shape():
    """The real model's layout, on the meta device: every key of a checkpoint shaped like cin256-v2's has a
    place, and the U-Net is the one the benchmark counts FLOPs of."""
    params = CIN256_V2["model"]["params"]
    shapes = {
        **{f"model.diffusion_model.{k}": s for k, s in _compvis_unet_shapes(params["unet_config"]["params"]).items()},
        **{f"first_stage_model.{k}": s for k, s in _compvis_vq_shapes(params["first_stage_config"]["params"]).items()},
        "cond_stage_model.embedding.weight": (1001, 512),
    }
    with torch.device("meta"):
        pipe = convert_ldm_class_conditional({k: torch.empty(s) for k, s in shapes.items()})
    assert tuple(pipe.unet.config.block_out_channels) == (192, 384, 576, 960) and pipe.unet.config.sample_size == 64
    assert pipe.class_embedder.config.null_class == 1000 and pipe.vqvae.config.num_vq_embeddings == 8192
    assert sum(p.numel() for p in pipe.unet.parameters()) == sum(
        math.prod(s) for k, s in shapes.items() if k.startswith("model.")
    )
    assert round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6, 2) == 400.92
    assert {key: pipe.unet.config[key] for key in LDM4G_CONFIG} == {
        key: list(v) if isinstance(v, tuple) else v for key, v in LDM4G_CONFIG.items()
    }


def _group_norm(x, weight, bias, eps):
    return F.group_norm(x, 32, weight, bias, eps)


def _attention(x, context, w, prefix):
    q = x @ w[f"{prefix}.to_q.weight"].T
    k, v = context @ w[f"{prefix}.to_k.weight"].T, context @ w[f"{prefix}.to_v.weight"].T
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)  # one head: all channels
    return (weights @ v) @ w[f"{prefix}.to_out.0.weight"].T + w[f"{prefix}.to_out.0.bias"]


def test_converted_unet_equals_a_hand_computed_forward_of_its_first_layers(converted):
    """Computed from the CompVis-named weights with torch.nn.functional, as ``openaimodel.py`` and
    ``attention.py`` define the layers: timestep embedding, conv_in, a res block, a spatial transformer."""
    checkpoint, pipe = converted
    w = {
        k.removeprefix("model.diffusion_model."): v
        for k, v in checkpoint.items()
        if k.startswith("model.diffusion_model.")
    }
    unet, generator = pipe.unet, torch.Generator().manual_seed(5)
    x, t = torch.randn(2, 3, 8, 8, generator=generator), torch.tensor([1, 981])

    half = 16  # CompVis' timestep_embedding: cos first, then sin, of t * 10000^(-i / half)
    angles = t[:, None].float() * torch.exp(-math.log(10000) * torch.arange(half) / half)[None]
    t_emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    emb = F.linear(
        F.silu(F.linear(t_emb, w["time_embed.0.weight"], w["time_embed.0.bias"])),
        w["time_embed.2.weight"],
        w["time_embed.2.bias"],
    )
    torch.testing.assert_close(unet.time_embedding(unet.time_proj(t)), emb)

    h0 = F.conv2d(x, w["input_blocks.0.0.weight"], w["input_blocks.0.0.bias"], padding=1)
    torch.testing.assert_close(unet.conv_in(x), h0)

    # ResBlock: in_layers (norm, SiLU, conv), + emb_layers (SiLU, linear),
    # out_layers (norm, SiLU, dropout, conv), + skip
    r = "input_blocks.1.0"
    h = F.conv2d(
        F.silu(_group_norm(h0, w[f"{r}.in_layers.0.weight"], w[f"{r}.in_layers.0.bias"], 1e-5)),
        w[f"{r}.in_layers.2.weight"],
        w[f"{r}.in_layers.2.bias"],
        padding=1,
    )
    h = h + F.linear(F.silu(emb), w[f"{r}.emb_layers.1.weight"], w[f"{r}.emb_layers.1.bias"])[:, :, None, None]
    h = F.conv2d(
        F.silu(_group_norm(h, w[f"{r}.out_layers.0.weight"], w[f"{r}.out_layers.0.bias"], 1e-5)),
        w[f"{r}.out_layers.3.weight"],
        w[f"{r}.out_layers.3.bias"],
        padding=1,
    )
    torch.testing.assert_close(unet.down_blocks[0].resnets[0](h0, emb), h0 + h)

    s = "input_blocks.4.1"  # SpatialTransformer of level 1 (64 channels at 4 x 4), cross-attending to the class token
    features = torch.randn(2, 64, 4, 4, generator=generator)
    context = pipe.class_embedder(torch.tensor([3, 10]))
    h = F.conv2d(
        _group_norm(features, w[f"{s}.norm.weight"], w[f"{s}.norm.bias"], 1e-6),
        w[f"{s}.proj_in.weight"],
        w[f"{s}.proj_in.bias"],
    )
    h = h.flatten(2).transpose(1, 2)  # (batch, positions, channels)
    b = f"{s}.transformer_blocks.0"

    def layer_norm(v, n):
        return F.layer_norm(v, (64,), w[f"{b}.{n}.weight"], w[f"{b}.{n}.bias"])

    h = _attention(layer_norm(h, "norm1"), layer_norm(h, "norm1"), w, f"{b}.attn1") + h
    h = _attention(layer_norm(h, "norm2"), context, w, f"{b}.attn2") + h
    value, gate = F.linear(layer_norm(h, "norm3"), w[f"{b}.ff.net.0.proj.weight"], w[f"{b}.ff.net.0.proj.bias"]).chunk(
        2, dim=-1
    )
    h = F.linear(value * F.gelu(gate), w[f"{b}.ff.net.2.weight"], w[f"{b}.ff.net.2.bias"]) + h
    h = F.conv2d(h.transpose(1, 2).reshape(2, 64, 4, 4), w[f"{s}.proj_out.weight"], w[f"{s}.proj_out.bias"]) + features
    torch.testing.assert_close(
        unet.down_blocks[1].attentions[0](features, encoder_hidden_states=context).sample, h, rtol=1e-4, atol=1e-4
    )  # SDPA rounds otherwise


def test_first_stage_quantizes_to_the_nearest_code_then_decodes(converted):
    checkpoint, pipe = converted
    codebook = checkpoint["first_stage_model.quantize.embedding.weight"]
    latents = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    vectors = latents.permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = codebook[torch.cdist(vectors, codebook).argmin(dim=1)].reshape(1, 8, 8, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(pipe.vqvae.quantize(latents)[0], nearest)
    w = {k.removeprefix("first_stage_model."): v for k, v in checkpoint.items() if k.startswith("first_stage_model.")}
    post = F.conv2d(nearest, w["post_quant_conv.weight"], w["post_quant_conv.bias"])
    torch.testing.assert_close(
        pipe.vqvae.decoder.conv_in(post),
        F.conv2d(post, w["decoder.conv_in.weight"], w["decoder.conv_in.bias"], padding=1),
    )
    decoded = pipe.vqvae.decode(latents).sample
    assert decoded.shape == (1, 3, 16, 16)  # the straight-through estimator z + (z_q - z) rounds by ~1e-7
    torch.testing.assert_close(
        decoded, pipe.vqvae.decode(nearest, force_not_quantize=True).sample, rtol=1e-4, atol=1e-4
    )


def test_extract_ema_takes_the_flattened_model_ema_weights():
    checkpoint = compvis_checkpoint()
    for key in [k for k in checkpoint if k.startswith("model.diffusion_model.")]:
        checkpoint["model_ema." + "".join(key.split(".")[1:])] = -checkpoint[key]
    plain, ema = (convert_ldm_class_conditional(checkpoint, TINY_CONFIG, extract_ema=e) for e in (False, True))
    weight = checkpoint["model.diffusion_model.input_blocks.0.0.weight"]
    assert torch.equal(plain.unet.conv_in.weight, weight) and torch.equal(ema.unet.conv_in.weight, -weight)


def test_conversion_refuses_what_it_cannot_convert():
    checkpoint = compvis_checkpoint()
    text_config = copy.deepcopy(TINY_CONFIG)
    text_config["model"]["params"]["cond_stage_key"] = "caption"
    with pytest.raises(ValueError, match="class-conditional LDM .*cond_stage_key='caption'"):
        convert_ldm_class_conditional(checkpoint, text_config)
    cosine = copy.deepcopy(TINY_CONFIG)
    cosine["model"]["params"]["beta_schedule"] = "cosine"
    with pytest.raises(ValueError, match="only CompVis' 'linear' beta_schedule converts .* not 'cosine'"):
        convert_ldm_class_conditional(checkpoint, cosine)
    with pytest.raises(ValueError, match="lacks \\['cond_stage_model.embedding.weight'\\]"):
        convert_ldm_class_conditional(
            {k: v for k, v in checkpoint.items() if not k.startswith("cond_stage")}, TINY_CONFIG
        )
    with pytest.raises(
        ValueError,
        match="does not match the configured U-Net: time_embedding.linear_1.weight is \\(128, 32\\), "
        "not \\(768, 192\\).*Is `original_config` the checkpoint's",
    ):
        convert_ldm_class_conditional(checkpoint)  # cin256-v2's full-size config for the tiny weights
    with pytest.raises(FileNotFoundError, match="`checkpoint`: no file"):
        load_compvis_checkpoint("no/such/model.ckpt")


def test_pickled_checkpoints_load_weights_only_unless_trusted(tmp_path):
    state_dict = {"model.diffusion_model.out.2.bias": torch.ones(3)}
    torch.save({"state_dict": state_dict, "hyper_parameters": argparse.Namespace(lr=1e-4)}, tmp_path / "lightning.ckpt")
    with pytest.raises(
        ValueError, match="holds more than tensors.*weights_only=False \\(the script's --unsafe-pickle\\)"
    ):
        load_compvis_checkpoint(tmp_path / "lightning.ckpt")
    assert torch.equal(
        load_compvis_checkpoint(tmp_path / "lightning.ckpt", weights_only=False)["model.diffusion_model.out.2.bias"],
        torch.ones(3),
    )
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="holds no state dict"):
        load_compvis_checkpoint(tmp_path / "tensor.pt")


def test_converted_pipeline_generates_and_caches_like_the_paper(converted):
    _, pipe = converted
    ours = DeepCacheLDMClassConditionalPipeline.from_pipe(pipe)
    ours.set_progress_bar_config(disable=True)
    mid_ran = []
    ours.unet.mid_block.register_forward_hook(lambda *_: mid_ran.append(True))

    def generate(p, **kwargs):
        return p(
            class_labels=[3, 7],
            num_inference_steps=20,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            **kwargs,
        ).images

    baseline = generate(pipe)
    mid_ran.clear()
    assert np.array_equal(generate(ours), baseline) and len(mid_ran) == 20
    mid_ran.clear()
    cached = generate(ours, **ours.deepcache_defaults.as_kwargs())
    assert ours.deepcache_record.full_steps == (0, 5, 10, 15) and len(mid_ran) == 4
    assert cached.shape == (2, 16, 16, 3) and not np.array_equal(cached, baseline)
    assert DeepCacheLDMClassConditionalPipeline.deepcache_defaults == deepcache.DeepCacheConfig(
        cache_interval=5, cache_branch_id=0
    )


def test_scheduler_visits_compvis_ddim_timesteps(converted):
    """CompVis' DDIM over T steps: timesteps 1, 1 + 1000/T, ... and alpha_bar[0] after the last."""
    scheduler = converted[1].scheduler
    scheduler.set_timesteps(250)
    assert scheduler.timesteps.tolist() == list(range(997, 0, -4))
    betas = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2
    torch.testing.assert_close(scheduler.alphas_cumprod, torch.cumprod(1 - betas, 0).float())
    assert scheduler.final_alpha_cumprod == scheduler.alphas_cumprod[0]


def test_guidance_is_compvis_uncond_plus_scale_times_the_difference():
    pipe = tiny_pipeline("ldm-cin")
    calls = []
    pipe.unet.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((args[0], kwargs["encoder_hidden_states"], out.sample)),
        with_kwargs=True,
    )
    latents = []
    pipe(
        class_labels=[1, 2],
        num_inference_steps=2,
        guidance_scale=3.0,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        callback_on_step_end=lambda p, i, t, kw: latents.append(kw["latents"]) or {},
    )
    sample, context, noise = calls[0]
    assert sample.shape[0] == 4 and torch.equal(sample[:2], sample[2:])
    torch.testing.assert_close(
        context, pipe.class_embedder(torch.tensor([10, 10, 1, 2]))
    )  # null class first, as CompVis
    guided = noise[:2] + 3.0 * (noise[2:] - noise[:2])
    scheduler = pipe.scheduler
    t = scheduler.timesteps[0]
    expected = scheduler.step(guided, t, sample[:2]).prev_sample
    torch.testing.assert_close(latents[0], expected)


def test_step_end_callbacks_see_and_replace_the_latents():
    """A plain callback and a diffusers ``PipelineCallback`` (its own tensor inputs), also with caching on."""

    class ZeroLatents(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step, timestep, callback_kwargs):
            return {"latents": torch.zeros_like(callback_kwargs["latents"])}

    pipe = tiny_pipeline("ldm-cin", DeepCacheLDMClassConditionalPipeline)
    steps = []
    for caching in ({}, {"cache_interval": 2}):
        output = pipe(
            class_labels=[1],
            num_inference_steps=3,
            output_type="latent",
            callback_on_step_end=ZeroLatents(cutoff_step_ratio=1.0),
            callback_on_step_end_tensor_inputs=[],
            **caching,
        )  # its own tensor inputs win, as in diffusers
        assert torch.equal(output.images, torch.zeros(1, 3, 8, 8))
        pipe(
            class_labels=[1],
            num_inference_steps=3,
            callback_on_step_end=lambda p, i, t, kw: steps.append((i, sorted(kw))) or {},
            **caching,
        )
    assert steps == [(0, ["latents"]), (1, ["latents"]), (2, ["latents"])] * 2


def test_gating_runs_the_conditional_half_after_the_gate_step():
    """T-GATE reads ``do_classifier_free_guidance`` as on diffusers' pipelines: after the gate one U-Net row per
    image."""
    pipe = tiny_pipeline("ldm-cin", DeepCacheLDMClassConditionalPipeline)
    rows = []
    pipe.unet.conv_in.register_forward_pre_hook(
        lambda m, args: rows.append(args[0].shape[0])
    )  # after the run halved the call
    pipe(class_labels=[1, 2], num_inference_steps=6, gate_step=2, cache_interval=2, output_type="np")
    assert rows == [4, 4, 2, 2, 2, 2]


def test_bad_arguments_fail_before_denoising_and_name_themselves():
    pipe = tiny_pipeline("ldm-cin", DeepCacheLDMClassConditionalPipeline)
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    cases = [
        (dict(class_labels=[3, 11]), ValueError, r"`class_labels` must lie in \[0, 11\), but got \[3, 11\]"),
        (dict(class_labels=[1.5]), TypeError, "`class_labels` must be an int or a non-empty 1-D sequence of ints"),
        (dict(class_labels=[]), TypeError, "`class_labels` must be an int or a non-empty"),
        (dict(class_labels="dog"), TypeError, "`class_labels` must be an int or a non-empty"),
        (dict(class_labels=[[1, 2]]), TypeError, "`class_labels` must be an int or a non-empty"),
        (
            dict(class_labels=1, num_inference_steps=0),
            ValueError,
            "`num_inference_steps` must be a positive integer, but got 0",
        ),
        (dict(class_labels=1, guidance_scale="high"), TypeError, "`guidance_scale` must be a number"),
        (
            dict(class_labels=1, latents=torch.zeros(2, 3, 8, 8)),
            ValueError,
            r"`latents` must have shape \(1, 3, 8, 8\)",
        ),
        (dict(class_labels=1, output_type="jpeg"), ValueError, "`output_type` must be one of"),
        (
            dict(class_labels=1, callback_on_step_end_tensor_inputs=["noise_pred"]),
            ValueError,
            "must be among \\['latents'\\]",
        ),
        (dict(class_labels=1, cache_interval=0), ValueError, "cache_interval"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            pipe(num_inference_steps=kwargs.pop("num_inference_steps", 2), **kwargs)
    pipe.class_embedder.register_to_config(null_class=None)
    with pytest.raises(ValueError, match="`guidance_scale` > 1 needs a null class"):
        pipe(class_labels=1, num_inference_steps=2)
    assert not calls
    assert pipe(class_labels=np.int64(1), num_inference_steps=2, guidance_scale=1.0, output_type="np").images.shape == (
        1,
        16,
        16,
        3,
    )
    with pytest.raises(ValueError, match="`null_class` must be a row of the table, in \\[0, 11\\)"):
        deepcache.ClassEmbedder(num_classes=11, embedding_dim=4, null_class=11)


def test_convert_script_then_example_script(tmp_path, capsys):
    """The command lines: a Lightning checkpoint and a YAML config in, a folder out that the example script samples
    from."""
    checkpoint = compvis_checkpoint()
    torch.save({"state_dict": checkpoint, "global_step": 7}, tmp_path / "model.ckpt")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    folder = tmp_path / "converted"
    script("convert_ldm_class_conditional").main(
        [
            "--checkpoint",
            str(tmp_path / "model.ckpt"),
            "--config",
            str(tmp_path / "config.yaml"),
            "--output",
            str(folder),
        ]
    )
    assert "11 classes (null class 10)" in capsys.readouterr().out
    loaded = DeepCacheLDMClassConditionalPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    expected = convert_ldm_class_conditional(checkpoint, TINY_CONFIG)
    expected.set_progress_bar_config(disable=True)
    call = dict(class_labels=[4], num_inference_steps=6, generator=None, output_type="np")
    images = [p(**{**call, "generator": torch.Generator().manual_seed(0)}).images for p in (loaded, expected)]
    assert np.array_equal(*images)

    output = tmp_path / "samples.png"
    script("ldm_class_conditional").main(
        [
            "--model",
            str(folder),
            "--classes",
            "1",
            "2",
            "--steps",
            "10",
            "--warmup-steps",
            "0",
            "--repeats",
            "1",
            "--cache-interval",
            "10",
            "--nonuniform",
            "--output",
            str(output),
        ]
    )
    out = capsys.readouterr().out
    assert "interval 10, branch 0, non-uniform (pow 1.2, center 4)" in out and "speedup:" in out and output.exists()
    with pytest.raises(SystemExit):
        script("ldm_class_conditional").main(["--model", str(folder), "--cache-interval", "4", "--nonuniform"])
    assert "the paper gives (center, pow) for intervals [2, 3, 5, 10, 20], not 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # 5 full steps of 10 around step 5 do not fit pow 1.2: said before any run
        script("ldm_class_conditional").main(
            ["--model", str(folder), "--steps", "10", "--cache-interval", "2", "--nonuniform"]
        )
    assert "at 10 steps: No non-uniform schedule with 5 full steps fits 10 steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script("ldm_class_conditional").main(["--model", str(tmp_path / "not-converted")])
    assert (
        "is not a folder; diffusers has no hub checkpoint of LDM-4-G: convert CompVis' first" in capsys.readouterr().err
    )
