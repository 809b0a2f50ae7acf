"""Settings users combine with caching: SD 2.1's v-prediction, FreeU, bfloat16 weights (on CPU), an IP-Adapter."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from helpers import ip_adapter_state_dict

from deepcache import DeepCacheStableDiffusionPipeline, DeepCacheUNet2DConditionModel
from deepcache.testing import tiny_pipeline, tiny_unet, tiny_unet_inputs

STEPS = 6


def _v_prediction(pipe):
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing"
    )
    return pipe


def _freeu(pipe):
    pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)  # SD 1.5's published values
    return pipe


def _bfloat16(pipe):
    return pipe.to(torch.bfloat16)


VARIANTS = {"v-prediction": _v_prediction, "FreeU": _freeu, "bfloat16": _bfloat16}


def _images(pipe, **kwargs):
    generator = torch.Generator().manual_seed(0)
    return pipe("a red cube", num_inference_steps=STEPS, generator=generator, output_type="np", **kwargs).images


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_caching_off_equals_diffusers_and_on_runs_the_schedule(variant):
    change = VARIANTS[variant]
    ours, plain = (
        change(tiny_pipeline("sd", DeepCacheStableDiffusionPipeline)),
        change(tiny_pipeline("sd", StableDiffusionPipeline)),
    )
    np.testing.assert_array_equal(_images(ours), _images(plain))
    mid_block_ran, calls = [], []
    ours.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    ours.unet.mid_block.register_forward_pre_hook(lambda module, args: mid_block_ran.append(len(calls) - 1))
    cached = _images(ours, cache_interval=3, cache_branch_id=0)
    assert mid_block_ran == [0, 3] and np.isfinite(cached).all()
    assert not np.array_equal(cached, _images(plain))


def test_bfloat16_features_stay_in_the_models_dtype():
    """The features handed from a full step to a cached one keep the U-Net's dtype (no silent upcast)."""
    pipe = _bfloat16(tiny_pipeline("sd", DeepCacheStableDiffusionPipeline))
    replayed = []

    def record(module, args, kwargs, output):  # a forward hook sees the arguments the run added
        features = kwargs.get("replicate_prev_features")
        if features is not None:
            replayed.append(features.dtype)

    pipe.unet.register_forward_hook(record, with_kwargs=True)
    _images(pipe, cache_interval=3, cache_branch_id=0)
    assert replayed == [torch.bfloat16] * (STEPS - 2)


def test_ip_adapter_image_embeddings_reach_the_shallow_layers_of_a_cached_step():
    """With an IP-Adapter, a cached step fed its own full step's features reproduces the full step on every
    branch, and other image embeddings change it: the shallow cross-attentions it runs read them too."""
    unet = tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    unet._load_ip_adapter_weights([ip_adapter_state_dict(unet)])
    args, kwargs = tiny_unet_inputs("sd1.5")
    generator = torch.Generator().manual_seed(5)
    embeds = [torch.randn(2, 1, unet.config.cross_attention_dim, generator=generator) for _ in range(2)]
    with torch.no_grad():
        for branch in range(unet.deepcache_layout.num_branches):
            given = {**kwargs, "added_cond_kwargs": {"image_embeds": [embeds[0]]}}
            full, features = unet(*args, **given, cache_branch_id=branch, return_dict=False)
            cached, _ = unet(
                *args, **given, cache_branch_id=branch, replicate_prev_features=features, return_dict=False
            )
            assert torch.equal(cached, full), branch
            other = {**kwargs, "added_cond_kwargs": {"image_embeds": [embeds[1]]}}
            changed, _ = unet(
                *args, **other, cache_branch_id=branch, replicate_prev_features=features, return_dict=False
            )
            assert not torch.equal(changed, full), branch
