"""ControlNet, cached too: on a cached step the ControlNet runs only the layers whose residuals the U-Net reads."""

import inspect

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    ControlNetUnionModel,
    MultiControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLControlNetUnionPipeline,
)
from PIL import Image

import deepcache
from deepcache import DeepCacheSDHelper
from deepcache.models import DeepCacheControlNetModel
from deepcache.testing.tiny import tiny_stable_diffusion_components, tiny_stable_diffusion_xl_components

STEPS = 7
CONTROL = Image.fromarray((np.random.RandomState(1).rand(32, 32, 3) * 255).astype(np.uint8))
MASK = Image.fromarray(np.pad(np.full((16, 16), 255, np.uint8), 8))


def _controlnet(unet, seed, cls=ControlNetModel):
    torch.manual_seed(seed)
    net = cls.from_unet(unet, conditioning_embedding_out_channels=(8, 16)).eval()
    if cls is ControlNetUnionModel:  # its control-type transformer is 320 wide unless told the tiny width
        width = unet.config.block_out_channels[0]
        config = {k: v for k, v in net.config.items() if k != "_use_default_values"}  # which would reset them
        net = cls.from_config(
            {**config, "num_trans_channel": width, "num_trans_head": 2, "num_proj_channel": width}
        ).eval()
    with torch.no_grad():  # from_unet zero-initialises the zero convolutions: give them weights, so residuals matter
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return net


def _pipe(cls, parent, sdxl=False, nets=1, union=False):
    components = (tiny_stable_diffusion_xl_components if sdxl else tiny_stable_diffusion_components)()
    made = [
        _controlnet(components["unet"], seed, ControlNetUnionModel if union else ControlNetModel)
        for seed in range(nets)
    ]
    controlnet = made[0] if nets == 1 else MultiControlNetModel(made)
    keys = set(inspect.signature(parent.__init__).parameters)
    pipe = cls(**{k: v for k, v in components.items() if k in keys}, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call(pipe, kind="sd", nets=1, **kwargs):
    generator = torch.Generator().manual_seed(0)
    control = [CONTROL] * nets if nets > 1 else CONTROL
    extra = {
        "sd": dict(image=control),
        "img2img": dict(image=CONTROL, control_image=control, strength=0.8),
        "inpaint": dict(image=CONTROL, mask_image=MASK, control_image=control, strength=0.8),
        "sdxl": dict(image=control, height=32, width=32),
        "union": dict(control_image=[CONTROL], control_mode=[0], height=32, width=32),
    }[kind]
    return pipe(
        "a red cube", num_inference_steps=STEPS, generator=generator, output_type="np", **extra, **kwargs
    ).images


CASES = {
    "sd": (deepcache.DeepCacheStableDiffusionControlNetPipeline, StableDiffusionControlNetPipeline, {}),
    "img2img": (
        deepcache.DeepCacheStableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionControlNetImg2ImgPipeline,
        {},
    ),
    "inpaint": (
        deepcache.DeepCacheStableDiffusionControlNetInpaintPipeline,
        StableDiffusionControlNetInpaintPipeline,
        {},
    ),
    "sdxl": (
        deepcache.DeepCacheStableDiffusionXLControlNetPipeline,
        StableDiffusionXLControlNetPipeline,
        {"sdxl": True},
    ),
    "union": (
        deepcache.DeepCacheStableDiffusionXLControlNetUnionPipeline,
        StableDiffusionXLControlNetUnionPipeline,
        {"sdxl": True, "union": True},
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_caching_off_equals_diffusers_and_cached_equals_the_whole_controlnet_path(kind):
    cls, parent, options = CASES[kind]
    ours, plain = _pipe(cls, parent, **options), _pipe(parent, parent, **options)
    np.testing.assert_array_equal(_call(ours, kind), _call(plain, kind))
    branch = 1 if options.get("sdxl") else 0
    cut = _call(ours, kind, cache_interval=3, cache_branch_id=branch)
    assert type(ours.controlnet) in (ControlNetModel, ControlNetUnionModel)  # cache-aware only during the call
    whole = _call(ours, kind, cache_interval=3, cache_branch_id=branch, cut_controlnet=False)
    np.testing.assert_array_equal(cut, whole)
    linear = dict(cache_interval=2, cache_branch_id=branch, cache_forecast="linear")  # forecasts from step 3 on
    np.testing.assert_array_equal(_call(ours, kind, **linear), _call(ours, kind, **linear, cut_controlnet=False))
    assert not np.array_equal(cut, _call(plain, kind))


@pytest.mark.parametrize(("branch", "guess_mode", "nets"), [(0, False, 1), (1, True, 1), (3, False, 2), (5, True, 2)])
def test_branches_guess_mode_and_multi_controlnet_equal_the_whole_controlnet_path(branch, guess_mode, nets):
    pipe = _pipe(deepcache.DeepCacheStableDiffusionControlNetPipeline, StableDiffusionControlNetPipeline, nets=nets)
    scale = [0.7, 1.3] if nets > 1 else 0.8
    options = dict(cache_interval=3, cache_branch_id=branch, guess_mode=guess_mode, controlnet_conditioning_scale=scale)
    cut = _call(pipe, nets=nets, **options)
    np.testing.assert_array_equal(cut, _call(pipe, nets=nets, **options, cut_controlnet=False))


def test_on_cached_steps_no_controlnet_layer_deeper_than_the_branch_runs():
    pipe = _pipe(deepcache.DeepCacheStableDiffusionControlNetPipeline, StableDiffusionControlNetPipeline)
    net, calls, ran = pipe.controlnet, [], {}
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    modules = {
        "mid": net.mid_block,
        "down0.resnet0": net.down_blocks[0].resnets[0],
        "down0.resnet1": net.down_blocks[0].resnets[1],
        "down0.downsampler": net.down_blocks[0].downsamplers[0],
        "down1": net.down_blocks[1],
        "zero conv 1": net.controlnet_down_blocks[1],
        "zero conv 2": net.controlnet_down_blocks[2],
        "mid zero conv": net.controlnet_mid_block,
    }
    for name, module in modules.items():
        module.register_forward_pre_hook(lambda module, args, name=name: ran.setdefault(name, []).append(len(calls)))
    _call(pipe, cache_interval=3, cache_branch_id=1)  # skips 0 (conv_in) and 1 (down block 0, layer 0)
    full = [0, 3, 6]
    assert ran["down0.resnet0"] == ran["zero conv 1"] == list(range(STEPS))
    for name in ("mid", "down0.resnet1", "down0.downsampler", "down1", "zero conv 2", "mid zero conv"):
        assert ran[name] == full, name
    ran.clear()
    calls.clear()
    _call(pipe, cache_interval=3, cache_branch_id=1, cut_controlnet=False)  # the option runs every layer on every step
    assert all(ran[name] == list(range(STEPS)) for name in modules), ran


def test_a_cached_controlnet_step_equals_a_hand_computation():
    """The cut ControlNet's residuals 0..b equal the whole ControlNet's; the deeper ones are zeros of one value per
    sample."""
    pipe = _pipe(deepcache.DeepCacheStableDiffusionControlNetPipeline, StableDiffusionControlNetPipeline)
    net = DeepCacheControlNetModel.from_config(pipe.controlnet.config)
    net.load_state_dict(pipe.controlnet.state_dict())
    generator = torch.Generator().manual_seed(3)
    inputs = dict(
        sample=torch.randn(2, 4, 16, 16, generator=generator),
        timestep=torch.tensor(500),
        encoder_hidden_states=torch.randn(2, 77, 16, generator=generator),
        controlnet_cond=torch.rand(2, 3, 32, 32, generator=generator),
        conditioning_scale=0.5,
        return_dict=False,
    )
    with torch.no_grad():
        whole_down, _ = net(**inputs)
        for branch in (0, 1, 2, 4):
            down, mid = net(**inputs, cache_branch_id=branch)
            assert len(down) == len(whole_down)
            for index, (residual, reference) in enumerate(zip(down, whole_down)):
                if index <= branch:
                    assert torch.equal(residual, reference)
                else:
                    assert residual.shape == (2, 1, 1, 1) and not residual.any()
            assert mid.shape == (2, 1, 1, 1) and not mid.any()


def test_the_helper_cuts_the_controlnet_and_gives_it_back_plain():
    pipe = _pipe(StableDiffusionControlNetPipeline, StableDiffusionControlNetPipeline)
    ours = _call(
        _pipe(deepcache.DeepCacheStableDiffusionControlNetPipeline, StableDiffusionControlNetPipeline),
        cache_interval=3,
        cache_branch_id=2,
    )
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=2)
        np.testing.assert_array_equal(_call(pipe), ours)
    assert type(pipe.controlnet) is ControlNetModel


def test_adaptive_caching_runs_the_controlnet_whole():
    """An adaptive step decides inside the U-Net, after the ControlNet ran: the ControlNet cannot be cut ahead."""
    pipe = _pipe(deepcache.DeepCacheStableDiffusionControlNetPipeline, StableDiffusionControlNetPipeline)
    ran = []
    pipe.controlnet.mid_block.register_forward_pre_hook(lambda module, args: ran.append(1))
    _call(pipe, cache_interval=4, cache_branch_id=0, cache_threshold=10.0)
    assert len(ran) == STEPS and len(pipe.deepcache_record.full_steps) < STEPS


def test_the_controlnet_benchmark_counts_what_a_cached_step_runs(capsys):
    """FLOP shares from `scripts/benchmark.py --controlnet` equal direct counts; the pipeline timing gives the same
    images cut and whole."""
    from helpers import script

    from deepcache.evaluation.benchmark_models import build_unet, loop_inputs
    from deepcache.evaluation.pipeline_timings import controlnet_flops, controlnet_for
    from deepcache.measurement import count_flops

    rows = controlnet_flops("tiny-sd", [0, 2])
    unet = build_unet("tiny-sd", "meta")
    with torch.device("meta"):
        net = controlnet_for(unet, 8, load_weights_from_unet=False)
    inputs = loop_inputs("tiny-sd", unet, 1)
    condition = torch.zeros(2, 3, 128, 128, device="meta")
    with torch.no_grad():
        whole = count_flops(net, inputs.noise, torch.tensor(500), inputs.kwargs["encoder_hidden_states"], condition)
        cut = count_flops(
            net, inputs.noise, torch.tensor(500), inputs.kwargs["encoder_hidden_states"], condition, cache_branch_id=2
        )
    assert rows[1].controlnet_whole == whole and rows[1].controlnet_cut == cut < whole
    assert rows[0].controlnet_cut < rows[1].controlnet_cut and all(r.cut_share < r.whole_share < 1 for r in rows)
    script("benchmark").main(["--controlnet", "--model", "emoji", "--branches", "0", "--steps", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "| branch | uncached | ControlNet whole | ControlNet cut |" in out and "| yes |" in out
    with pytest.raises(SystemExit, match="SD-shaped model"):
        script("benchmark").main(["--controlnet", "--model", "tiny-ddpm"])


def test_saved_controlnet_pipelines_are_plain_diffusers_checkpoints_and_load_both_ways(tmp_path):
    import json

    ours = _pipe(deepcache.DeepCacheStableDiffusionControlNetPipeline, StableDiffusionControlNetPipeline)
    ours.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionControlNetPipeline" and index["controlnet"] == [
        "diffusers",
        "ControlNetModel",
    ]
    plain = StableDiffusionControlNetPipeline.from_pretrained(tmp_path)
    back = deepcache.DeepCacheStableDiffusionControlNetPipeline.from_pretrained(tmp_path)
    piped = deepcache.DeepCacheStableDiffusionControlNetPipeline.from_pipe(plain)
    for pipe in (plain, back, piped):
        pipe.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_call(plain), _call(ours))
    expected = _call(ours, cache_interval=3)
    np.testing.assert_array_equal(_call(back, cache_interval=3), expected)
    np.testing.assert_array_equal(_call(piped, cache_interval=3), expected)
