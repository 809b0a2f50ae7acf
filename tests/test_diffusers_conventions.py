"""Every DeepCache pipeline checked the way diffusers checks its own pipelines (our tests, its habits).

Each check runs on every tiny pipeline it applies to, with caching off (the output must equal the
diffusers parent's exactly) and, where it makes sense, with caching on (deterministic, batch-consistent,
callback-correct). Applicability is read from the parent's signature, as diffusers' test mixins do.
"""

import contextlib
import dataclasses
import inspect
import io
import typing

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from helpers import CASES, STEPS, call, first_output, generate, ip_adapter_state_dict

import deepcache
from deepcache.runtime import diffusers_class
from deepcache.testing import tiny_pipeline

ON = dict(cache_interval=3)  # the pipeline's default branch
CONFIG_FIELDS = [
    (t.config, f) for t in deepcache.TECHNIQUES for f in dataclasses.fields(t.config)
]  # each technique's, in order
CACHING_NAMES = [f.name for _, f in CONFIG_FIELDS]
PIPELINE_CLASSES = sorted({cls for cls, _, _ in CASES.values()}, key=lambda c: c.__name__)


def parameters(case) -> dict:
    return inspect.signature(CASES[case][0].__call__).parameters


def needs(case, *names):
    missing = [n for n in names if n not in parameters(case)]
    if missing:
        pytest.skip(f"{CASES[case][0].__name__}'s parent has no {missing}")


def pair(case):
    """(plain diffusers pipeline, DeepCache pipeline) with the same weights."""
    return tiny_pipeline(case), tiny_pipeline(case, CASES[case][0])


# ---- 1. The parent's signature, whole --------------------------------------------------------------


@pytest.mark.parametrize("cls", PIPELINE_CLASSES, ids=lambda c: c.__name__)
def test_signature_is_the_parents_plus_keyword_only_caching_parameters(cls):
    parent = inspect.signature(diffusers_class(cls).__call__)
    ours = inspect.signature(cls.__call__)
    parent_params = list(parent.parameters.values())
    var_keyword = [p for p in parent_params if p.kind is p.VAR_KEYWORD]
    head = [p for p in parent_params if p.kind is not p.VAR_KEYWORD]
    ours_params = list(ours.parameters.values())
    assert ours_params[: len(head)] == head  # names, order, kinds, defaults and annotations
    assert ours_params[len(ours_params) - len(var_keyword) :] == var_keyword if var_keyword else True
    added = ours_params[len(head) : len(ours_params) - len(var_keyword)]
    assert [p.name for p in added] == CACHING_NAMES
    assert CACHING_NAMES == [
        "cache_interval",
        "cache_branch_id",
        "cache_layer_id",
        "cache_block_id",
        "uniform",
        "pow",
        "center",
        "cache_threshold",
        "cache_min_interval",
        "cache_full_steps",
        "cut_controlnet",
        "cache_forecast",
        "gate_step",
        "block_cache",
    ]
    assert all(p.kind is p.KEYWORD_ONLY for p in added)
    assert [p.default for p in added] == [getattr(config(), f.name) for config, f in CONFIG_FIELDS]
    assert [p.annotation for p in added] == [typing.get_type_hints(config)[f.name] for config, f in CONFIG_FIELDS]
    assert ours.return_annotation == parent.return_annotation
    # help() and IDEs read the same: the parent's documentation plus the caching arguments
    assert cls.__call__.__doc__.startswith(diffusers_class(cls).__call__.__doc__ or "")
    assert all(f"{name} (`" in cls.__call__.__doc__ for name in CACHING_NAMES)
    assert "cache_interval: int = 1" in pydoc_text(cls)


def pydoc_text(cls) -> str:
    import pydoc

    return pydoc.render_doc(cls.__call__, renderer=pydoc.plaintext)


def test_helper_swapped_class_shows_the_call_it_makes(case):
    plain = tiny_pipeline(case)
    parent_signature = inspect.signature(type(plain).__call__)
    with deepcache.DeepCacheSDHelper(plain):
        assert inspect.signature(type(plain).__call__) == parent_signature
    ours = tiny_pipeline(case, CASES[case][0])
    with deepcache.DeepCacheSDHelper(ours):  # the helper's setting replaces the call's: no caching parameters
        assert inspect.signature(type(ours).__call__) == parent_signature


def test_positional_first_argument_equals_the_parents(case):
    _, arguments, _ = CASES[case]
    first = next(iter(list(parameters(case))[1:]))  # after self
    if first not in arguments:
        pytest.skip(f"the tiny case does not pass `{first}`")
    rest = {k: v for k, v in arguments.items() if k != first}
    plain, ours = pair(case)

    def run(pipe, **kwargs):
        out = pipe(
            arguments[first],
            **rest,
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            **kwargs,
        )
        return np.asarray(first_output(out))

    expected = run(plain)
    assert np.array_equal(run(ours), expected)
    assert np.array_equal(run(ours, **ON), generate(ours, case, **ON))


def _encode(pipe, case):
    """``encode_prompt`` used on its own, as the keyword arguments a call takes instead of ``prompt``."""
    embeds = pipe.encode_prompt(
        CASES[case][1]["prompt"], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True
    )
    names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
    return dict(zip(names, embeds))


def test_prompt_embeds_only_call_equals_the_parent(case):
    needs(case, "prompt_embeds")
    plain, ours = pair(case)
    embeds = _encode(ours, case)
    expected = generate(plain, case, prompt=None, **embeds)
    assert np.array_equal(generate(ours, case, prompt=None, **embeds), expected)
    assert np.array_equal(expected, generate(plain, case))  # encode_prompt alone gives the prompt's embeddings
    assert np.array_equal(generate(ours, case, prompt=None, **embeds, **ON), generate(ours, case, **ON))


# ---- 2. diffusers' common battery -------------------------------------------------------------------


@pytest.mark.parametrize("caching", [{}, ON], ids=["off", "on"])
def test_batch_equals_single(case, caching):
    """A batch of two equals each of its members run alone (batched inputs, one generator each)."""
    _, arguments, _ = CASES[case]
    ours = tiny_pipeline(case, CASES[case][0])
    batched = {k: [v, v] for k, v in arguments.items() if k in ("prompt", "image", "mask_image")}
    if "batch_size" in arguments:
        batched["batch_size"] = 2
    if not batched or case == "svd":
        pytest.skip("SVD takes one conditioning image per call")

    def run(generators, **kwargs):
        return generate(ours, case, **kwargs, **caching, generator=generators)

    together = run([torch.Generator().manual_seed(s) for s in (0, 1)], **batched)
    single = {k: v for k, v in arguments.items() if k != "batch_size"} | (
        {"batch_size": 1} if "batch_size" in arguments else {}
    )
    alone = [run(torch.Generator().manual_seed(s), **single)[0] for s in (0, 1)]
    assert together.shape[0] == 2
    assert np.abs(together - np.stack(alone)).max() < 1e-4


def test_num_images_per_prompt(case):
    name = "num_videos_per_prompt" if case == "svd" else "num_images_per_prompt"
    needs(case, name)
    plain, ours = pair(case)
    expected = generate(plain, case, **{name: 2})
    assert np.array_equal(generate(ours, case, **{name: 2}), expected)
    cached = generate(ours, case, **{name: 2}, **ON)
    assert cached.shape == expected.shape and np.array_equal(cached, generate(ours, case, **{name: 2}, **ON))


def test_return_dict_false_returns_what_the_parent_returns(case):
    """A tuple whose first item is the images (SVD: the frames themselves), as the parent returns."""
    plain, ours = pair(case)
    expected = call(plain, case, return_dict=False)
    for caching in ({}, ON):
        output = call(ours, case, return_dict=False, **caching)
        assert type(output) is type(expected)
        first = output[0] if isinstance(output, tuple) else output
        assert np.array_equal(np.asarray(first), generate(ours, case, **caching))
    assert np.array_equal(np.asarray(call(ours, case, return_dict=False)[0]), np.asarray(expected[0]))


@pytest.mark.parametrize("caching", [{}, ON], ids=["off", "on"])
def test_step_end_callback_gets_the_tensors_asked_for_and_can_change_latents(case, caching):
    needs(case, "callback_on_step_end", "callback_on_step_end_tensor_inputs")
    iterations = CASES[case][2]
    plain, ours = pair(case)
    seen = {}

    def callback(pipe, step, timestep, callback_kwargs):
        seen.setdefault(id(pipe), []).append((step, sorted(callback_kwargs)))
        latents = callback_kwargs["latents"]
        return {"latents": torch.zeros_like(latents) if step == iterations - 1 else latents}

    tensor_inputs = list(ours._callback_tensor_inputs)
    outputs = {}
    for pipe in (plain, ours):
        out = call(
            pipe,
            case,
            callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=tensor_inputs,
            output_type="latent",
            **(caching if pipe is ours else {}),
        )
        outputs[id(pipe)] = first_output(out).detach()
    for pipe in (plain, ours):
        assert seen[id(pipe)] == [(step, sorted(tensor_inputs)) for step in range(iterations)]
        assert torch.count_nonzero(outputs[id(pipe)]) == 0  # the last callback's latents are the output


def test_classifier_free_guidance_on_and_off(case):
    name = "max_guidance_scale" if case == "svd" else "guidance_scale"
    needs(case, name)
    plain, ours = pair(case)
    batches = []
    ours.unet.register_forward_pre_hook(lambda module, args, kwargs: batches.append(args[0].shape[0]), with_kwargs=True)
    off = {name: 1.0} | ({"min_guidance_scale": 1.0} if case == "svd" else {})
    unet_batches = []
    for guidance in ({}, off):
        batches.clear()
        expected = generate(plain, case, **guidance)
        assert np.array_equal(generate(ours, case, **guidance), expected)
        cached = generate(ours, case, **guidance, **ON)
        assert len(set(batches)) == 1  # full and cached steps take the same (un)guided batch
        assert cached.shape == expected.shape and np.isfinite(cached).all()
        assert not np.array_equal(cached, expected)
        unet_batches.append(batches[0])
    assert unet_batches[0] == 2 * unet_batches[1]  # guidance doubles the U-Net's batch; without it, it does not


def test_attention_slicing_changes_nothing(case):
    plain, ours = pair(case)
    if not hasattr(ours, "enable_attention_slicing") or not hasattr(ours.unet, "set_attention_slice"):
        pytest.skip("no sliceable attention")
    unsliced = generate(ours, case, **ON)
    for pipe in (plain, ours):
        pipe.enable_attention_slicing(slice_size=1)
    assert np.array_equal(generate(ours, case), generate(plain, case))
    assert np.abs(generate(ours, case, **ON) - unsliced).max() < 1e-4


def _outcome(function):
    """``("ok", result)`` or ``("raised", exception type)``."""
    try:
        return "ok", function()
    except Exception as error:  # noqa: BLE001 - the parent's failure is the expected behaviour too
        return "raised", type(error)


@pytest.mark.parametrize("setting", ["slicing", "tiling"])
def test_vae_slicing_and_tiling(case, setting):
    plain, ours = pair(case)
    if not hasattr(getattr(ours, "vae", None), f"enable_{setting}"):
        pytest.skip(f"the VAE has no {setting}")
    parent = _outcome(getattr(plain.vae, f"enable_{setting}"))
    if parent[0] == "raised":  # SVD's temporal decoder implements neither
        assert _outcome(getattr(ours.vae, f"enable_{setting}"))[0] == "raised"
        return
    latents = first_output(call(ours, case, output_type="latent", **ON))
    assert _outcome(getattr(ours.vae, f"enable_{setting}"))[0] == parent[0]
    assert np.array_equal(generate(ours, case), generate(plain, case))
    assert torch.equal(
        first_output(call(ours, case, output_type="latent", **ON)), latents
    )  # the VAE setting leaves the cached loop alone
    decoded = generate(ours, case, **ON)
    assert np.array_equal(generate(ours, case, **ON), decoded) and np.isfinite(decoded).all()


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_cpu_offload(case, offload):
    """Images as without offloading; where the parent itself fails (sequential offload with this
    torch and accelerate on CPU), ours fails the same way rather than differently."""
    if case == "svd" and offload == "sequential":
        pytest.skip("slow on SVD's temporal decoder; model offload covers it")
    plain, ours = pair(case)
    expected_on = generate(ours, case, **ON)
    enabled = _outcome(lambda: getattr(plain, f"enable_{offload}_cpu_offload")(device="cpu"))
    assert _outcome(lambda: getattr(ours, f"enable_{offload}_cpu_offload")(device="cpu")) == enabled
    if enabled[0] == "raised":  # LDMPipeline declares no offload sequence
        return
    parent = _outcome(lambda: generate(plain, case))
    if parent[0] == "raised":
        assert _outcome(lambda: generate(ours, case)) == parent
        return
    assert np.array_equal(generate(ours, case), parent[1])
    assert np.abs(generate(ours, case, **ON) - expected_on).max() < 1e-5


def test_to_dtype_keeps_the_unet_class(case):
    ours = tiny_pipeline(case, CASES[case][0])
    unet_class = type(ours.unet)
    ours.to(torch.float16)
    modules = [m for m in ours.components.values() if isinstance(m, torch.nn.Module)]
    assert modules and all(m.dtype == torch.float16 for m in modules)
    assert type(ours.unet) is unet_class and not isinstance(ours.unet, deepcache.DeepCacheUNetMixin)


def test_components_round_trip(case):
    cls = CASES[case][0]
    plain, ours = pair(case)
    assert set(ours.components) == set(plain.components)
    options = {
        k: ours.config[k]
        for k in inspect.signature(cls.__init__).parameters
        if k in ours.config and k not in ours.components
    }
    rebuilt = cls(**ours.components, **options)  # e.g. the refiner's requires_aesthetics_score
    assert np.array_equal(generate(type(plain)(**plain.components, **options), case), generate(plain, case))
    assert np.array_equal(generate(rebuilt, case, **ON), generate(ours, case, **ON))


def test_from_pipe_on_a_plain_pipeline(case):
    cls = CASES[case][0]
    plain = tiny_pipeline(case)
    expected = generate(plain, case)
    ours = cls.from_pipe(plain)
    assert type(ours) is cls and ours.unet is plain.unet and type(ours.unet) is type(plain.unet)
    assert np.array_equal(generate(ours, case), expected)


@pytest.mark.parametrize("safe_serialization", [True, False])
def test_save_load_round_trip(case, tmp_path, safe_serialization):
    if not safe_serialization and case not in ("sd", "sdxl", "svd", "ddpm"):
        pytest.skip("pickled weights are checked once per U-Net type")
    cls = CASES[case][0]
    ours = tiny_pipeline(case, cls)
    ours.save_pretrained(tmp_path, safe_serialization=safe_serialization)
    weights = {p.suffix for p in (tmp_path / "unet").iterdir()}
    assert (".safetensors" in weights) == safe_serialization and (".bin" in weights) != safe_serialization
    parent = diffusers_class(cls)  # diffusers' generic loader finds diffusers' own classes only
    loader = DiffusionPipeline if parent.__module__.startswith("diffusers.") else parent
    loaded, plain = cls.from_pretrained(tmp_path), loader.from_pretrained(tmp_path)
    assert type(plain) is parent
    assert np.array_equal(generate(loaded, case), generate(plain, case))  # the parent's output from the same files
    # Caching on gives what was saved. Not bit for bit: the parent itself moves by ~4e-7 across a round
    # trip on SDXL (the reloaded second text encoder's pooled embedding, transformers 5.24).
    assert np.abs(generate(loaded, case, **ON) - generate(ours, case, **ON)).max() < 1e-5


@pytest.mark.parametrize("caching", [{}, ON], ids=["off", "on"])
def test_progress_bar_config(case, caching):
    iterations = CASES[case][2]
    for disable in (False, True):
        ours = tiny_pipeline(case, CASES[case][0])
        ours.set_progress_bar_config(disable=disable)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            generate(ours, case, **caching)
        shown = f"{iterations}/{iterations}" in stderr.getvalue()
        assert shown != disable


# ---- IP-Adapter, where the parent supports it --------------------------------------------------------


def test_ip_adapter(case):
    needs(case, "ip_adapter_image_embeds")
    plain, ours = pair(case)
    without = generate(ours, case, **ON)
    for pipe in (plain, ours):
        pipe.unet._load_ip_adapter_weights([ip_adapter_state_dict(pipe.unet)])
    embeds = [torch.randn(2, 1, ours.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(4))]
    assert np.array_equal(
        generate(ours, case, ip_adapter_image_embeds=embeds), generate(plain, case, ip_adapter_image_embeds=embeds)
    )
    assert type(ours.unet) is type(plain.unet)  # loading an IP-Adapter left the U-Net's class alone
    ours.set_ip_adapter_scale(0.0)
    assert np.abs(generate(ours, case, ip_adapter_image_embeds=embeds, **ON) - without).max() < 1e-5
    ours.set_ip_adapter_scale(1.0)
    assert np.abs(generate(ours, case, ip_adapter_image_embeds=embeds, **ON) - without).max() > 1e-3
