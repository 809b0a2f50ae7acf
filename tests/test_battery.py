"""The breadth battery: every diffusers pipeline whose denoiser is a U-Net, tiny and offline, under the helper."""

import importlib.util
import warnings

import pytest
from helpers import SCRIPTS, script

from deepcache.runtime import diffusers_class
from deepcache.testing.battery import CASES, check_pipeline, pipeline_table

REFUSED = {  # pipeline: what the refusal must say
    "StableDiffusionLatentUpscalePipeline": "KDownBlock2D",
    "LEditsPPPipelineStableDiffusion": "attention store",
    "LEditsPPPipelineStableDiffusionXL": "attention store",
    "StableCascadeDecoderPipeline": "`decoder` is a StableCascadeUNet",
}


@pytest.fixture(scope="module")
def results():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: check_pipeline(case) for name, case in CASES.items()}


def test_every_pipeline_works_or_is_refused_at_enable_with_its_reason(results):
    for name, result in results.items():
        if name in REFUSED:
            assert result.refused is not None and REFUSED[name] in result.refused, name
            assert result.restored_exactly, name  # a refused enable leaves the pipeline as it was
        else:
            assert result.refused is None, (name, result.refused)
            assert result.deep_skipped_on_cached_steps, name
            assert result.each_loop_starts_full, (name, result.loop_full_steps)
            assert result.restored_exactly, name
            assert result.dedicated_equals_plain in (None, True), name
            assert result.works, name


def test_the_battery_covers_every_pipeline_the_issue_named_and_each_dedicated_class():
    import deepcache

    named = {
        "AnimateDiffPipeline",
        "AnimateDiffSDXLPipeline",
        "AnimateDiffVideoToVideoPipeline",
        "AnimateDiffControlNetPipeline",
        "AnimateDiffVideoToVideoControlNetPipeline",
        "PIAPipeline",
        "I2VGenXLPipeline",
        "AudioLDM2Pipeline",
        "StableDiffusionAdapterPipeline",
        "StableDiffusionXLAdapterPipeline",
        "MarigoldDepthPipeline",
        "KolorsPipeline",
        "IFPipeline",
        "IFSuperResolutionPipeline",
        *(f"KandinskyV22{kind}Pipeline" for kind in ("", "Img2Img", "Inpaint", "Controlnet", "ControlnetImg2Img")),
        *REFUSED,
    }
    assert named <= set(CASES)
    for case in CASES.values():
        if case.dedicated is not None:
            assert diffusers_class(getattr(deepcache, case.dedicated)).__name__ == case.name


def test_the_docs_table_is_the_batterys(results):
    table = pipeline_table(list(results.values()), CASES)
    page = (SCRIPTS.parent / "docs" / "pipelines.md").read_text()
    module = script("pipeline_table")
    assert module.replace_table(page, table) == page, "run python scripts/pipeline_table.py"
    assert f"**{len(CASES) - len(REFUSED)} of {len(CASES)} work; {len(REFUSED)} refused" in table
    assert importlib.util.find_spec("sentencepiece") is not None  # Kolors is a real class only with it
