"""DeepCache beside the diffusers features users combine it with: model offloading and LoRA."""

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from deepcache import DeepCacheSDHelper, DeepCacheStableDiffusionPipeline
from deepcache.models import cache_aware
from deepcache.testing import tiny_pipeline, tiny_unet_inputs


def generate(pipe, **kwargs):
    return pipe(
        "a red cube", num_inference_steps=7, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs
    ).images


def test_model_cpu_offload_computes_the_same_images():
    """accelerate's offloading hook keeps the U-Net's forward as `_old_forward`; caching must go through it."""
    reference = tiny_pipeline("sd", DeepCacheStableDiffusionPipeline)
    expected, expected_cached = generate(reference), generate(reference, cache_interval=3)

    ours = tiny_pipeline("sd", DeepCacheStableDiffusionPipeline)
    ours.enable_model_cpu_offload(device="cpu")
    assert hasattr(ours.unet, "_hf_hook")
    assert np.array_equal(generate(ours, cache_interval=3), expected_cached)
    assert np.array_equal(generate(ours), expected)

    plain = tiny_pipeline("sd")
    plain.enable_model_cpu_offload(device="cpu")
    with DeepCacheSDHelper(plain) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=1)
        assert np.array_equal(generate(plain), expected_cached)
    assert np.array_equal(generate(plain), expected)


def _save_random_lora(directory):
    """A LoRA for the tiny U-Net with non-zero weights, in the diffusers file format."""
    unet = tiny_pipeline("sd").unet
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=layers, safe_serialization=True)


def test_lora_loads_and_unloads_under_caching(tmp_path):
    _save_random_lora(tmp_path)
    plain, ours = tiny_pipeline("sd"), tiny_pipeline("sd", DeepCacheStableDiffusionPipeline)
    without_lora = generate(ours, cache_interval=3)
    for pipe in (plain, ours):
        pipe.load_lora_weights(tmp_path)
    assert np.array_equal(generate(ours), generate(plain))  # caching off: diffusers' LoRA output exactly

    with_lora = generate(ours, cache_interval=3)
    assert not np.allclose(with_lora, without_lora, atol=1e-3)
    args, _ = tiny_unet_inputs("sd1.5")  # a cached step uses the LoRA: fed its full step's features, it repeats it
    with cache_aware(ours.unet) as unet:
        full, features = unet(*args, cache_branch_id=1, return_dict=False)
        assert torch.equal(unet(*args, cache_branch_id=1, replicate_prev_features=features, return_dict=False)[0], full)
    with DeepCacheSDHelper(plain) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=1)
        assert np.array_equal(generate(plain), with_lora)

    ours.unload_lora_weights()
    assert np.array_equal(generate(ours, cache_interval=3), without_lora)
