import dataclasses
import json
import re
import shutil

import pytest
import torch
from diffusers import UNet2DConditionModel
from helpers import compile_counting_graphs

from deepcache import DeepCacheUNet2DConditionModel, DeepCacheUNet2DModel
from deepcache.measurement import count_flops, module_flops, step_flops
from deepcache.testing import tiny_unet, tiny_unet_inputs


def test_no_cache_arguments_equal_diffusers(models):
    plain, cached, args, kwargs = models
    assert torch.equal(cached(*args, **kwargs).sample, plain(*args, **kwargs).sample)
    assert torch.equal(cached(*args, **kwargs, return_dict=False)[0], plain(*args, **kwargs, return_dict=False)[0])


def test_full_step_equals_diffusers_on_every_branch(models):
    plain, cached, args, kwargs = models
    expected = plain(*args, **kwargs).sample
    for branch in range(cached.deepcache_layout.num_branches):
        output = cached(*args, **kwargs, cache_branch_id=branch)
        assert isinstance(output, type(plain(*args, **kwargs)))
        assert torch.equal(output.sample, expected), branch
        sample, features = cached(*args, **kwargs, cache_branch_id=branch, return_dict=False)
        assert torch.equal(sample, expected) and torch.equal(features, output.features)


def test_cached_step_fed_its_own_full_step_features_reproduces_the_full_step(models):
    _, cached, args, kwargs = models
    for branch in range(cached.deepcache_layout.num_branches):
        full, features = cached(*args, **kwargs, cache_branch_id=branch, return_dict=False)
        step, returned = cached(
            *args, **kwargs, cache_branch_id=branch, replicate_prev_features=features, return_dict=False
        )
        assert torch.equal(step, full), branch
        assert returned is features


LAYER_LISTS = ("resnets", "attentions", "motion_modules", "temp_convs", "temp_attentions")


def _layer_modules(prefix: str, block, j: int) -> set[str]:
    """Layer ``j`` of a block: its resnet and what runs with it (AudioLDM2: several attentions per layer)."""
    names = set()
    for kind in LAYER_LISTS:
        modules = getattr(block, kind, None)
        if modules:
            per_layer = len(modules) // len(block.resnets)
            names |= {f"{prefix}.{kind}.{k}" for k in range(j * per_layer, (j + 1) * per_layer)}
    return names


def _expected_modules(unet, branch: int) -> set[str]:
    """Modules a cached step at ``branch`` runs, enumerated from the definition of the skip numbering."""
    ran, skip = set(), 1
    for i, block in enumerate(unet.down_blocks):
        for j in range(len(block.resnets)):
            if skip <= branch:
                ran |= _layer_modules(f"down_blocks.{i}", block, j)
            skip += 1
        if block.downsamplers:
            if skip <= branch:
                ran.add(f"down_blocks.{i}.downsamplers.0")
            skip += 1
    consumed = skip - 1  # up layers consume the skips from the deepest one down to skip 0
    for u, block in enumerate(unet.up_blocks):
        for j in range(len(block.resnets)):
            if consumed <= branch:
                ran |= _layer_modules(f"up_blocks.{u}", block, j)
                if block.upsamplers:
                    ran.add(f"up_blocks.{u}.upsamplers.0")
            consumed -= 1
    return ran


def _record_modules(unet):
    lists = "|".join((*LAYER_LISTS, "downsamplers", "upsamplers"))
    pattern = re.compile(rf"(down_blocks|up_blocks)\.\d+\.({lists})\.\d+$|mid_block$")
    ran = set()
    for name, module in unet.named_modules():
        if pattern.match(name):
            module.register_forward_hook(lambda *_, name=name: ran.add(name))
    return ran


def test_cached_step_runs_exactly_the_shallow_modules_of_every_branch(models):
    _, cached, args, kwargs = models
    ran = _record_modules(cached)
    for branch in range(cached.deepcache_layout.num_branches):
        _, features = cached(*args, **kwargs, cache_branch_id=branch, return_dict=False)
        assert "mid_block" in ran
        ran.clear()
        cached(*args, **kwargs, cache_branch_id=branch, replicate_prev_features=features)
        assert ran == _expected_modules(cached, branch), branch
        ran.clear()


def test_cached_ddpm_step_equals_a_hand_computed_shallow_pass():
    unet = tiny_unet("ddpm", cls=DeepCacheUNet2DModel)
    (x, t), _ = tiny_unet_inputs("ddpm")
    deep = torch.randn(2, 8, 16, 16)  # stands for the tensor entering up_blocks[-1].resnets[1]
    output = unet(x, t, cache_branch_id=1, replicate_prev_features=deep).sample

    emb = unet.time_embedding(unet.time_proj(t[None] * torch.ones(2, dtype=t.dtype)))
    skip0 = unet.conv_in(x)
    skip1 = unet.down_blocks[0].resnets[0](skip0, emb)
    up = unet.up_blocks[-1]
    h = up.resnets[1](torch.cat([deep, skip1], dim=1), emb)
    h = up.resnets[2](torch.cat([h, skip0], dim=1), emb)
    expected = unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-6)


def test_cached_sd_step_at_branch_0_equals_a_hand_computed_shallow_pass():
    unet = tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    (x, t, text), _ = tiny_unet_inputs("sd1.5")
    deep = torch.randn(2, 8, 16, 16)  # stands for the tensor entering the last up layer
    output = unet(x, t, text, cache_branch_id=0, replicate_prev_features=deep).sample

    emb = unet.time_embedding(unet.time_proj(t[None].expand(2)).to(x.dtype))
    up = unet.up_blocks[-1]
    h = up.resnets[2](torch.cat([deep, unet.conv_in(x)], dim=1), emb)
    h = up.attentions[2](h, encoder_hidden_states=text).sample
    expected = unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind, branches, blocks", [("sd1.5", 12, 4), ("sdxl", 9, 3)])
def test_both_branch_numberings(kind, branches, blocks):
    layout = tiny_unet(kind, cls=DeepCacheUNet2DConditionModel).deepcache_layout
    assert layout.num_branches == branches
    assert layout.resolve(cache_layer_id=0, cache_block_id=0) == 1
    for layer_id in range(blocks):
        for block_id in range(3 if layer_id < blocks - 1 else 2):  # 2 layers + downsampler; last block has none
            branch = layout.resolve(cache_layer_id=layer_id, cache_block_id=block_id)
            assert branch == layer_id * (2 + 1) + block_id + 1  # REFERENCE.md section 2
            assert layout.fork_ids(branch) == (layer_id, block_id)
    assert layout.resolve(cache_branch_id=0) == 0 and layout.resolve() is None


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"cache_branch_id": 12}, ValueError, "`cache_branch_id` must be in [0, 11] for this U-Net, but got 12"),
        ({"cache_branch_id": -1}, ValueError, "`cache_branch_id` must be in [0, 11]"),
        ({"cache_branch_id": "1"}, TypeError, "`cache_branch_id` must be an integer in [0, 11]"),
        ({"cache_branch_id": True}, TypeError, "`cache_branch_id` must be an integer"),
        ({"cache_layer_id": 4, "cache_block_id": 0}, ValueError, "`cache_layer_id` must be in [0, 3]"),
        (
            {"cache_layer_id": 3, "cache_block_id": 2},
            ValueError,
            "`cache_block_id (for cache_layer_id=3)` must be in [0, 1]",
        ),
        ({"cache_layer_id": 0}, ValueError, "`cache_layer_id` and `cache_block_id` must be given together"),
        ({"cache_branch_id": 1, "cache_layer_id": 0, "cache_block_id": 0}, ValueError, "Pass either `cache_branch_id`"),
        (
            {"replicate_prev_features": torch.zeros(1)},
            ValueError,
            "`replicate_prev_features` and `cache_refresh` need a branch",
        ),
    ],
)
def test_bad_branch_arguments_raise_clear_errors(arguments, error, message):
    unet = tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    with pytest.raises(error, match=re.escape(message)):
        unet(*args, **arguments)


def test_from_unet_converts_in_place_without_copying_weights():
    plain = tiny_unet("sd1.5")
    args, _ = tiny_unet_inputs("sd1.5")
    expected = plain(*args).sample
    weight = plain.conv_in.weight
    unet = DeepCacheUNet2DConditionModel.from_unet(plain)
    assert unet is plain and type(unet) is DeepCacheUNet2DConditionModel and unet.conv_in.weight is weight
    assert torch.equal(unet(*args).sample, expected)
    assert DeepCacheUNet2DConditionModel.from_unet(unet) is unet
    with pytest.raises(TypeError, match="`unet` must be a UNet2DConditionModel, but got UNet2DModel"):
        DeepCacheUNet2DConditionModel.from_unet(tiny_unet("ddpm"))


def test_from_pretrained_round_trip_keeps_plain_diffusers_checkpoints(tmp_path):
    plain = tiny_unet("sdxl")
    args, kwargs = tiny_unet_inputs("sdxl")
    plain.save_pretrained(tmp_path / "unet")
    unet = DeepCacheUNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet").eval()
    assert type(unet) is DeepCacheUNet2DConditionModel
    assert torch.equal(unet(*args, **kwargs).sample, plain(*args, **kwargs).sample)

    unet.save_pretrained(tmp_path / "resaved")
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["_class_name"] == "UNet2DConditionModel"
    again = UNet2DConditionModel.from_pretrained(tmp_path / "resaved").eval()
    assert torch.equal(again(*args, **kwargs).sample, plain(*args, **kwargs).sample)


def test_views_follow_changes_to_the_model():
    plain, unet = tiny_unet("sd1.5"), tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    unet(*args, cache_branch_id=4)  # builds and caches the views
    for model in (plain, unet):
        model.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)  # attributes set on the up blocks
    assert torch.equal(unet(*args, cache_branch_id=4).sample, plain(*args).sample)


def test_the_model_holds_no_tensor_or_weight_copy_between_calls():
    plain, unet = tiny_unet("sd1.5"), tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    _, features = unet(*args, cache_branch_id=2, return_dict=False)
    unet(*args, cache_branch_id=2, replicate_prev_features=features)
    for stack in unet.__dict__["_deepcache_views"]["views"].values():
        assert stack.top.tap.features is None and stack.top.replay.features is None
    assert list(unet.state_dict()) == list(plain.state_dict())
    assert sum(p.numel() for p in unet.parameters()) == sum(p.numel() for p in plain.parameters())


def test_torch_compile_builds_one_graph_per_step_kind():
    unet = tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    compiled, graphs = compile_counting_graphs(unet)
    features = None
    for step in range(7):
        timestep = torch.tensor(900 - 100 * step)
        replicate = None if step % 3 == 0 else features
        sample, features = compiled(
            args[0], timestep, args[2], cache_branch_id=1, replicate_prev_features=replicate, return_dict=False
        )
        expected = unet(args[0], timestep, args[2], cache_branch_id=1, replicate_prev_features=replicate).sample
        torch.testing.assert_close(sample, expected)
    assert len(graphs) == 2  # one for full steps, one for cached steps, however many steps run


@pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("clang++")), reason="inductor compiles C++ on CPU and finds no compiler"
)
def test_inductor_modes_compile_full_and_cached_steps_equal_to_eager():
    """The modes a CPU user picks, really compiled by inductor (about 80 s cold on this machine, so on a
    two-level U-Net): each builds one full and one cached graph, equal to eager, and a second round compiles nothing."""
    small = dict(
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    unet = tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel, **small)
    args, _ = tiny_unet_inputs("sd1.5")
    full, features = unet(*args, cache_branch_id=0, return_dict=False)
    cached, _ = unet(*args, cache_branch_id=0, replicate_prev_features=features, return_dict=False)
    for mode in ("default", "reduce-overhead", "max-autotune-no-cudagraphs"):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        compiled = torch.compile(unet, mode=mode, dynamic=False)
        for _ in range(2):
            compiled_full, compiled_features = compiled(*args, cache_branch_id=0, return_dict=False)
            compiled_cached, _ = compiled(
                *args, cache_branch_id=0, replicate_prev_features=compiled_features, return_dict=False
            )
            torch.testing.assert_close(compiled_full, full, msg=mode)
            torch.testing.assert_close(compiled_cached, cached, msg=mode)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2, mode
    torch._dynamo.reset()


def test_instance_level_forward_patches_do_not_bypass_caching():
    # What the original helper's disable() and accelerate's hooks leave: forwards bound as instance attributes.
    plain, reference = tiny_unet("sd1.5"), tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    plain.forward = plain.forward
    plain._old_forward = plain.forward
    plain.up_blocks[3].forward = plain.up_blocks[3].forward
    unet = DeepCacheUNet2DConditionModel.from_unet(plain)
    assert unet._old_forward.__func__ is DeepCacheUNet2DConditionModel.forward
    _, features = reference(*args, cache_branch_id=1, return_dict=False)
    cached = unet(*args, cache_branch_id=1, replicate_prev_features=features).sample
    assert torch.equal(cached, reference(*args, cache_branch_id=1, replicate_prev_features=features).sample)


def _controlnet_residuals(unet, args):
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8,)).eval()
    for parameter in controlnet.parameters():  # from_unet zero-initialises the output convs: make residuals visible
        torch.nn.init.normal_(parameter, std=0.1)
    control = torch.rand(args[0].shape[0], 3, *args[0].shape[-2:], generator=torch.Generator().manual_seed(2))
    down, mid = controlnet(*args, controlnet_cond=control, return_dict=False)
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def test_controlnet_residuals_full_and_cached_steps_on_every_branch():
    """The stored feature already holds the full step's ControlNet residuals; a cached step adds only the shallow
    ones."""
    plain, cached = tiny_unet("sd1.5"), tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    residuals = _controlnet_residuals(plain, args)
    expected = plain(*args, **residuals).sample
    assert not torch.equal(expected, plain(*args).sample)
    for branch in range(cached.deepcache_layout.num_branches):
        full, features = cached(*args, **residuals, cache_branch_id=branch, return_dict=False)
        assert torch.equal(full, expected), branch
        step, _ = cached(
            *args, **residuals, cache_branch_id=branch, replicate_prev_features=features, return_dict=False
        )
        assert torch.equal(step, expected), branch


ADAPTER_SHAPES = {  # (channels, size) of each down block's T2I-Adapter residual in the tiny U-Nets
    "sd1.5": ((8, 16), (16, 8), (16, 4), (32, 2)),  # cross-attention blocks: after their last layer
    "sdxl": ((8, 8), (16, 8), (32, 4)),  # SDXL's first block has none: after its downsampler
}


@pytest.mark.parametrize("kind", sorted(ADAPTER_SHAPES))
def test_t2i_adapter_residuals_on_full_cached_and_adaptive_steps_of_every_branch(kind):
    """A cached step applies the adapter residuals of the down blocks whose end it runs; fed its own full step's
    features it reproduces the full step exactly, and an adaptive step that refreshes equals it."""
    plain, cached = tiny_unet(kind), tiny_unet(kind, cls=DeepCacheUNet2DConditionModel)
    args, kwargs = tiny_unet_inputs(kind)
    generator = torch.Generator().manual_seed(3)
    adapter = [torch.randn(2, c, s, s, generator=generator) for c, s in ADAPTER_SHAPES[kind]]

    def call(unet, **extra):
        return unet(*args, **kwargs, down_intrablock_additional_residuals=list(adapter), **extra, return_dict=False)

    expected = call(plain)[0]
    assert not torch.equal(expected, plain(*args, **kwargs).sample)
    for branch in range(cached.deepcache_layout.num_branches):
        full, features = call(cached, cache_branch_id=branch)
        assert torch.equal(full, expected), branch
        step, _ = call(cached, cache_branch_id=branch, replicate_prev_features=features)
        assert torch.equal(step, expected), branch
        refreshed, _ = call(
            cached,
            cache_branch_id=branch,
            replicate_prev_features=features,
            cache_refresh=lambda tensor: True,
        )
        torch.testing.assert_close(refreshed, expected, rtol=0, atol=1e-5)
    # A cached step fed other features still takes the residuals of the blocks it runs: they change its output.
    _, features = call(cached, cache_branch_id=3)
    with_adapter, _ = call(cached, cache_branch_id=3, replicate_prev_features=features)
    without, _ = cached(*args, **kwargs, cache_branch_id=3, replicate_prev_features=features, return_dict=False)
    assert not torch.equal(with_adapter, without)


def test_deprecated_adapter_form_is_refused_on_cached_steps_with_the_form_to_use():
    cached = tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    adapter = tuple(torch.zeros(2, c, s, s) for c, s in ADAPTER_SHAPES["sd1.5"])
    features = cached(*args, cache_branch_id=1).features
    with pytest.raises(ValueError, match="down_intrablock_additional_residuals"):
        cached(*args, down_block_additional_residuals=adapter, cache_branch_id=1, replicate_prev_features=features)


def test_adaptive_step_that_refreshes_equals_the_full_step_on_every_branch(models):
    """Shallow layers in the cached view, the rest in the deep view: the same numbers as the whole network."""
    _, cached, args, kwargs = models
    ran = _record_modules(cached)
    for branch in range(cached.deepcache_layout.num_branches):
        full, features = cached(*args, **kwargs, cache_branch_id=branch, return_dict=False)
        ran.clear()
        seen = []
        step, refreshed = cached(
            *args,
            **kwargs,
            cache_branch_id=branch,
            cache_refresh=lambda h, seen=seen: seen.append(h) or True,
            return_dict=False,
        )
        assert torch.equal(step, full) and torch.equal(refreshed, features), branch
        assert len(seen) == 1 and "mid_block" in ran, branch


def test_adaptive_step_that_replays_equals_the_cached_step_and_sees_the_branch_skip(models):
    _, cached, args, kwargs = models
    ran = _record_modules(cached)
    for branch in (0, cached.deepcache_layout.num_branches // 2):
        _, features = cached(*args, **kwargs, cache_branch_id=branch, return_dict=False)
        other = (args[0] + 0.1, *args[1:])
        expected = cached(*other, **kwargs, cache_branch_id=branch, replicate_prev_features=features).sample
        ran.clear()
        seen = []
        step, replayed = cached(
            *other,
            **kwargs,
            cache_branch_id=branch,
            replicate_prev_features=features,
            cache_refresh=lambda h, seen=seen: seen.append(h) or False,
            return_dict=False,
        )
        assert torch.equal(step, expected) and replayed is features
        assert ran == _expected_modules(cached, branch), branch
        assert seen[0].shape[0] == features.shape[0]


def test_adaptive_step_with_controlnet_residuals_equals_the_full_step():
    plain, cached = tiny_unet("sd1.5"), tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    residuals = _controlnet_residuals(plain, args)
    expected = plain(*args, **residuals).sample
    for branch in range(cached.deepcache_layout.num_branches):
        step, _ = cached(*args, **residuals, cache_branch_id=branch, cache_refresh=lambda h: True, return_dict=False)
        assert torch.equal(step, expected), branch


def test_adaptive_step_without_features_cannot_replay():
    cached = tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    with pytest.raises(ValueError, match="no `replicate_prev_features`"):
        cached(*args, cache_branch_id=1, cache_refresh=lambda h: False)
    with pytest.raises(ValueError, match="need a branch"):
        cached(*args, cache_refresh=lambda h: True)


def test_module_flops_counts_attention_on_real_tensors():
    """On CPU tensors the counter misses the fused attention kernel; ``module_flops`` runs the math
    one, so counting real calls gives what the meta-device count gives, per call."""
    unet = tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, kwargs = tiny_unet_inputs("sd1.5")
    with torch.device("meta"):
        meta = DeepCacheUNet2DConditionModel.from_config(unet.config)
    meta_args = tuple(a.to("meta") for a in args)
    full, cached = step_flops(meta, meta_args, kwargs, 1)
    _, features = unet(*args, cache_branch_id=1, return_dict=False)
    counted = module_flops(
        unet, lambda: [unet(*args), unet(*args, cache_branch_id=1, replicate_prev_features=features)]
    )
    assert counted == full + cached and cached < full
    with torch.no_grad():
        assert count_flops(unet, *args) < full  # what the counter sees of the fused kernel: no attention


def test_every_output_class_carries_the_extra_outputs_by_name():
    """One list of extra outputs for every U-Net class; a tuple output gives them as a dict, taken by name in any
    order, or DeepCache's features alone (the fork's form), also taken by name."""
    from deepcache.models import EXTRA_OUTPUTS, take_extra
    from deepcache.models.unets import CACHE_AWARE_UNETS

    for cls in CACHE_AWARE_UNETS:
        fields = [f.name for f in dataclasses.fields(cls._deepcache_output)]
        assert fields == ["sample", *EXTRA_OUTPUTS], cls
    sample, extras = torch.zeros(1), {"features": torch.ones(1), "block_residuals": {}}
    residuals, rest = take_extra((sample, extras), "block_residuals")
    features, rest = take_extra(rest, "features")
    assert residuals == {} and features is extras["features"] and rest == (sample,) and len(extras) == 2
    features, rest = take_extra((sample, extras["features"]), "features")
    assert features is extras["features"] and rest == (sample,)
