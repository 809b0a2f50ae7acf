import importlib.util
import subprocess
import sys
import zipfile

import pytest
import torch

import deepcache
from deepcache.tiny import tiny_unet, tiny_unet_inputs

CACHE_CLASSES = {
    "sd1.5": deepcache.DeepCacheUNet2DConditionModel,
    "sdxl": deepcache.DeepCacheUNet2DConditionModel,
    "svd": deepcache.DeepCacheUNetSpatioTemporalConditionModel,
    "ddpm": deepcache.DeepCacheUNet2DModel,
}


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(params=sorted(CACHE_CLASSES))
def kind(request):
    return request.param


@pytest.fixture
def models(kind):
    """(plain diffusers U-Net, cache-aware U-Net with the same weights, forward args, kwargs)."""
    args, kwargs = tiny_unet_inputs(kind)
    return tiny_unet(kind), tiny_unet(kind, cls=CACHE_CLASSES[kind]), args, kwargs


@pytest.fixture(scope="session")
def original_helper(tmp_path_factory):
    """The original DeepCache 0.1.1 plug-and-play helper module, to compare images against.

    Its PyPI name normalizes to ours (``DeepCache`` == ``deepcache``), so it cannot be installed
    beside this package: its one helper file is read from the registry's wheel instead.
    """
    directory = tmp_path_factory.mktemp("original-deepcache")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(directory), "DeepCache==0.1.1"]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
        wheel = next(directory.glob("DeepCache-0.1.1-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            helper_file = directory / "original_deepcache_helper.py"
            helper_file.write_bytes(archive.read("DeepCache/extension/deepcache.py"))
    except (subprocess.SubprocessError, OSError, StopIteration, KeyError) as error:
        pytest.skip(f"the original DeepCache 0.1.1 wheel could not be fetched from the package registry: {error}")
    spec = importlib.util.spec_from_file_location("original_deepcache_helper", helper_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
