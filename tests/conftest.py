import pytest
import torch
from helpers import CASES

import deepcache
from deepcache.evaluation.original import load_original_helper
from deepcache.testing import tiny_unet, tiny_unet_inputs

CACHE_CLASSES = {
    "sd1.5": deepcache.DeepCacheUNet2DConditionModel,
    "sdxl": deepcache.DeepCacheUNet2DConditionModel,
    "svd": deepcache.DeepCacheUNetSpatioTemporalConditionModel,
    "ddpm": deepcache.DeepCacheUNet2DModel,
    "motion": deepcache.DeepCacheUNetMotionModel,
    "3d": deepcache.DeepCacheUNet3DConditionModel,
    "i2vgenxl": deepcache.DeepCacheI2VGenXLUNet,
    "audioldm2": deepcache.DeepCacheAudioLDM2UNet2DConditionModel,
}


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(params=sorted(CACHE_CLASSES))
def kind(request):
    return request.param


@pytest.fixture(params=sorted(CASES))
def case(request):
    """A tiny pipeline kind of ``helpers.CASES``."""
    return request.param


@pytest.fixture
def models(kind):
    """(plain diffusers U-Net, cache-aware U-Net with the same weights, forward args, kwargs)."""
    args, kwargs = tiny_unet_inputs(kind)
    return tiny_unet(kind), tiny_unet(kind, cls=CACHE_CLASSES[kind]), args, kwargs


@pytest.fixture(scope="session")
def original_helper():
    """The original DeepCache 0.1.1 plug-and-play helper module, to compare images against."""
    try:
        return load_original_helper()
    except (OSError, KeyError) as error:
        pytest.skip(f"the original DeepCache 0.1.1 wheel could not be fetched from the package registry: {error}")
