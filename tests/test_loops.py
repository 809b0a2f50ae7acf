"""Calls that run several denoising loops, or several U-Net calls per step, without a step-end callback: each loop
gets its own schedule and no feature crosses a loop."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DConditionModel

from deepcache import DeepCacheSDHelper, DeepCacheUNetMixin, uniform_full_steps
from deepcache.testing import tiny_unet
from deepcache.testing.battery import CASES, check_pipeline


class SeparateGuidancePipeline(DiffusionPipeline):
    """Guidance as two U-Net calls per step (conditional, then unconditional), and ``loops`` loops per call; no
    step-end callback, like many research pipelines."""

    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, num_inference_steps: int = 6, loops: int = 1, generator=None):
        text = torch.randn(1, 7, 16, generator=generator)
        outputs = []
        for _ in range(loops):
            self.scheduler.set_timesteps(num_inference_steps)
            latents = torch.randn(1, 4, 16, 16, generator=generator)
            for t in self.scheduler.timesteps:
                conditional = self.unet(latents, t, text).sample
                unconditional = self.unet(latents, t, torch.zeros_like(text)).sample
                noise = unconditional + 2.0 * (conditional - unconditional)
                latents = self.scheduler.step(noise, t, latents).prev_sample
            outputs.append(latents)
        return torch.cat(outputs)


def _pipeline():
    return SeparateGuidancePipeline(tiny_unet("sd1.5"), DDIMScheduler())


def _mid_block_calls(pipe):
    calls = []
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(False))
    pipe.unet.mid_block.register_forward_pre_hook(lambda module, args: calls.__setitem__(-1, True))
    return calls


def _run(pipe, **kwargs):
    return pipe(generator=torch.Generator().manual_seed(0), **kwargs)


@pytest.mark.parametrize("loops", [1, 2])
def test_two_unet_calls_per_step_without_a_callback_are_one_iteration_each_with_its_own_cache(loops):
    pipe = _pipeline()
    plain = _run(pipe, loops=loops)
    calls = _mid_block_calls(pipe)
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=0)
        cached = _run(pipe, loops=loops)
        record = pipe.deepcache_record
    assert record.loops() == ((0, 3),) * loops and record.num_iterations == 6 * loops
    full = [step for loop in range(loops) for step in (6 * loop, 6 * loop + 3)]
    assert [i for i, ran in enumerate(calls) if ran] == [2 * i + c for i in full for c in (0, 1)]
    assert not np.array_equal(cached, plain) and np.isfinite(cached.numpy()).all()
    assert torch.equal(_run(pipe, loops=loops), plain)


def test_the_unconditional_call_is_fed_its_own_features_not_the_conditional_ones(monkeypatch):
    """Each of an iteration's U-Net calls keeps its own cache: a cached step gets the features its own call produced
    at the last full step."""
    produced, fed = [], []
    branch_forward = DeepCacheUNetMixin._branch_forward

    def spy(self, views, branch, features, refresh, args, kwargs):
        fed.append(features)
        sample, out = branch_forward(self, views, branch, features, refresh, args, kwargs)
        produced.append(out)
        return sample, out

    monkeypatch.setattr(DeepCacheUNetMixin, "_branch_forward", spy)
    pipe = _pipeline()
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=2, cache_branch_id=0)
        _run(pipe, num_inference_steps=2)
    assert fed[0] is None and fed[1] is None  # iteration 0: both calls full
    assert fed[2] is produced[0] and fed[3] is produced[1] and not torch.equal(fed[2], fed[3])


def test_one_step_loops_each_start_full():
    """Loops of one iteration restart at the same timestep: a loop that has used up its iterations is over."""
    pipe = _pipeline()
    calls = _mid_block_calls(pipe)
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=0)
        _run(pipe, num_inference_steps=1, loops=3)
        assert pipe.deepcache_record.loops() == ((0,),) * 3
    assert calls == [True] * 6


@pytest.mark.parametrize("name", ["MarigoldDepthPipeline", "MarigoldNormalsPipeline", "MarigoldIntrinsicsPipeline"])
def test_marigold_ensembles_run_each_member_on_its_own_schedule(name):
    """Ensemble size 2 at batch size 1: two loops of 6 steps, full at 0 and 3 in each, never a feature of the first
    member in the second's loop."""
    result = check_pipeline(CASES[name])
    assert result.works
    assert result.unet_calls == 12 and result.deep_calls == 4 and result.loop_full_steps == ((0, 3), (0, 3))


def test_record_of_several_loops_prints_and_saves_them(tmp_path):
    pipe = _pipeline()
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=0)
        _run(pipe, loops=2, num_inference_steps=4)
    record = pipe.deepcache_record
    assert record.loop_lengths == (4, 4) and record.loops() == ((0, 3), (0, 3))
    assert str(record).splitlines()[1] == "#..#|#..#"
    record.save(tmp_path / "record.json")
    assert type(record).load(tmp_path / "record.json") == record


def test_animatediff_free_init_loops_are_each_cached_on_their_own():
    """FreeInit re-runs the whole loop from re-initialised noise (with a step-end callback): each run is a loop."""
    import deepcache

    ours = deepcache.DeepCacheAnimateDiffPipeline.from_pipe(CASES["AnimateDiffPipeline"].build())
    ours.set_progress_bar_config(disable=True)
    ours.enable_free_init(num_iters=2, use_fast_sampling=False)
    calls = _mid_block_calls(ours)
    ours(**CASES["AnimateDiffPipeline"].call(), cache_interval=3, cache_branch_id=0)
    record = ours.deepcache_record
    assert record.loops() == (tuple(uniform_full_steps(6, 3)),) * 2
    assert [i for i, ran in enumerate(calls) if ran] == [0, 3, 6, 9]


class WideSubclassUNet(UNet2DConditionModel):
    """A user's subclass of a supported U-Net with the parent's block layout."""


class BrokenSubclassUNet(UNet2DConditionModel):
    """A subclass whose first down block has one attention more than it has layers: DeepCache cannot cut it."""

    def __init__(self, **config):
        super().__init__(**config)
        self.down_blocks[0].attentions.append(self.down_blocks[0].attentions[0])


def test_a_subclass_of_a_supported_unet_with_its_layout_is_accepted_and_given_back():
    from deepcache.testing.tiny_unets import SD15_UNET

    torch.manual_seed(0)
    unet = WideSubclassUNet(**SD15_UNET).eval()
    pipe = SeparateGuidancePipeline(unet, DDIMScheduler())
    plain = _run(pipe)
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=1)
        assert isinstance(pipe.unet, WideSubclassUNet) and type(pipe.unet).__name__ == "DeepCacheWideSubclassUNet"
        cached = _run(pipe)
    assert type(pipe.unet) is WideSubclassUNet and torch.equal(_run(pipe), plain)
    assert not torch.equal(cached, plain)


def test_a_subclass_whose_layout_does_not_fit_is_refused_at_enable_with_the_reason():
    from deepcache.testing.tiny_unets import SD15_UNET

    pipe = SeparateGuidancePipeline(BrokenSubclassUNet(**SD15_UNET).eval(), DDIMScheduler())
    with pytest.raises(ValueError, match=r"cannot cut CrossAttnDownBlock2D: its `attentions` has 3 entries for 2"):
        DeepCacheSDHelper(pipe).enable()
    assert type(pipe.unet) is BrokenSubclassUNet


class NoSchedulerPipeline(DiffusionPipeline):
    """Its own sampling loop, with neither a step-end callback nor a scheduler: iterations cannot be counted."""

    def __init__(self, unet):
        super().__init__()
        self.register_modules(unet=unet)

    def __call__(self, steps: int = 4):
        sample = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        for t in range(steps, 0, -1):
            sample = sample - 0.1 * self.unet(sample, t * 100, torch.zeros(1, 7, 16)).sample
        return sample


def test_a_pipeline_whose_iterations_cannot_be_counted_is_refused_at_enable():
    pipe = NoSchedulerPipeline(tiny_unet("sd1.5"))
    calls = _mid_block_calls(pipe)
    helper = DeepCacheSDHelper(pipe)
    with pytest.raises(TypeError, match="NoSchedulerPipeline has neither: its loop structure cannot be followed"):
        helper.enable()
    assert not helper.enabled and type(pipe) is NoSchedulerPipeline and type(pipe.unet) is UNet2DConditionModel
    assert torch.isfinite(pipe()).all() and len(calls) == 4  # it runs as before


def test_animatediff_free_noise_windows_run_inside_one_unet_call_per_step():
    """FreeNoise's context windows live inside the motion blocks: one U-Net call per step, cached as usual."""
    import deepcache
    from deepcache.testing import tiny_pipeline

    pipe = tiny_pipeline("animatediff", deepcache.DeepCacheAnimateDiffPipeline)
    pipe.enable_free_noise(context_length=2, context_stride=1)
    arguments = dict(prompt="a red cube", num_frames=4, height=32, width=32, num_inference_steps=6, output_type="np")
    plain = pipe(**arguments, generator=torch.Generator().manual_seed(0)).frames
    calls = _mid_block_calls(pipe)
    cached = pipe(**arguments, generator=torch.Generator().manual_seed(0), cache_interval=3, cache_branch_id=0).frames
    assert calls == [i in (0, 3) for i in range(6)] and pipe.deepcache_record.loops() == ((0, 3),)
    assert np.isfinite(cached).all() and not np.array_equal(cached, plain)
