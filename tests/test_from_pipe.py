"""``from_pipe`` in every direction: a DeepCache pipeline holds the plain diffusers U-Net, cache-aware only during a
call, so its components pass to stock pipelines (diffusers checks their exact types) and back, without copies."""

import warnings

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    StableDiffusionPAGPipeline,
    StableDiffusionPanoramaPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPTextModel, CLIPTokenizer

import deepcache
from deepcache.testing import tiny_pipeline


class CommunityPipeline(DiffusionPipeline):
    """A pipeline written outside diffusers, as community pipelines are: components annotated with diffusers classes."""

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
    ):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, latents, embeddings):
        return self.unet(latents, 500, encoder_hidden_states=embeddings).sample


def _images(pipe, **kwargs):
    generator = torch.Generator().manual_seed(0)
    call = dict(prompt="red apple", num_inference_steps=8, generator=generator, output_type="np", height=32, width=32)
    return pipe(**call, **kwargs).images


def _from_pipe(cls, pipe):
    """``cls.from_pipe(pipe)``, failing on diffusers' warning that a component was not passed over."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return cls.from_pipe(pipe)


def test_deepcache_pipeline_holds_the_plain_unet_and_keeps_it_plain_between_calls():
    ours = tiny_pipeline("sd", cls=deepcache.DeepCacheStableDiffusionPipeline)
    assert type(ours.unet) is UNet2DConditionModel
    before = dict(vars(ours.unet))
    _images(ours, cache_interval=3, cache_branch_id=1)
    assert type(ours.unet) is UNet2DConditionModel and vars(ours.unet) == before
    assert ours.deepcache_record.full_steps == (0, 3, 6)


@pytest.mark.parametrize(
    "stock", [StableDiffusionPAGPipeline, StableDiffusionPanoramaPipeline, StableDiffusionPipeline]
)
def test_from_pipe_to_stock_pipelines_shares_the_components_and_the_source_keeps_caching(stock):
    ours = tiny_pipeline("sd", cls=deepcache.DeepCacheStableDiffusionPipeline)
    cached = _images(ours, cache_interval=3, cache_branch_id=1)
    plain_components = tiny_pipeline("sd").components
    piped = _from_pipe(stock, ours)
    assert type(piped) is stock
    assert all(piped.components[name] is module for name, module in ours.components.items() if name in piped.components)
    expected = _images(stock(**plain_components))
    np.testing.assert_array_equal(_images(piped), expected)
    np.testing.assert_array_equal(_images(ours, cache_interval=3, cache_branch_id=1), cached)
    assert ours.deepcache_record.full_steps == (0, 3, 6)


def test_from_pipe_to_a_community_pipeline():
    ours = tiny_pipeline("sd", cls=deepcache.DeepCacheStableDiffusionPipeline)
    community = _from_pipe(CommunityPipeline, ours)
    assert community.unet is ours.unet
    latents, embeddings = torch.randn(1, 4, 16, 16), torch.randn(1, 7, ours.text_encoder.config.hidden_size)
    expected = tiny_pipeline("sd").unet(latents, 500, encoder_hidden_states=embeddings).sample
    assert torch.equal(community(latents, embeddings), expected)


def test_from_pipe_stock_to_deepcache_to_deepcache_and_back_keeps_the_config():
    """diffusers' ``test_from_pipe_consistent_config``: there and back again, the same config and no copies."""
    plain = tiny_pipeline("sd")
    ours = _from_pipe(deepcache.DeepCacheStableDiffusionPipeline, plain)
    image_to_image = _from_pipe(deepcache.DeepCacheStableDiffusionImg2ImgPipeline, ours)
    pag = _from_pipe(StableDiffusionPAGPipeline, image_to_image)
    back = _from_pipe(deepcache.DeepCacheStableDiffusionPipeline, pag)
    assert back.unet is plain.unet and pag.unet is plain.unet
    original, returned = dict(ours.config), dict(back.config)
    assert {k: v for k, v in original.items() if not k.startswith("_")} == {
        k: v for k, v in returned.items() if not k.startswith("_")
    }


def test_from_pipe_between_adapter_pipelines_keeps_the_config():
    """The T2I-Adapter test that failed when DeepCache pipelines held a cache-aware U-Net: to Stable Diffusion and
    back (the adapter passed again, as diffusers' test passes the components the other pipeline lacks)."""
    ours = _from_pipe(deepcache.DeepCacheStableDiffusionAdapterPipeline, tiny_pipeline("sd-adapter"))
    stock = _from_pipe(StableDiffusionPipeline, ours)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = deepcache.DeepCacheStableDiffusionAdapterPipeline.from_pipe(stock, adapter=ours.adapter)
    assert back.unet is ours.unet and type(back.unet) is UNet2DConditionModel
    original, returned = dict(ours.config), dict(back.config)
    assert {k: v for k, v in original.items() if not k.startswith("_")} == {
        k: v for k, v in returned.items() if not k.startswith("_")
    }
