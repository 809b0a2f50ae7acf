"""Class-conditional latent diffusion (CompVis LDM-4-G on ImageNet, ``cin256-v2``), plain and with DeepCache.

diffusers has no pipeline for it, so :class:`LDMClassConditionalPipeline` is the plain one, built
from diffusers parts the way CompVis samples it: a ``UNet2DConditionModel`` that cross-attends to
one token per image from a :class:`~deepcache.ldm.ClassEmbedder`, DDIM, classifier-free guidance
against the null class, and a ``VQModel`` first stage that quantizes the latents as it decodes
them. :class:`DeepCacheLDMClassConditionalPipeline` adds caching to it like every other pipeline.
``deepcache.convert_ldm_class_conditional`` builds one from the original checkpoint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from diffusers import (
    DiffusionPipeline,
    ImagePipelineOutput,
    SchedulerMixin,
    UNet2DConditionModel,
    VQModel,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor

from ..pipelines import DeepCachePipelineMixin
from ..runtime import DeepCacheConfig
from .class_embedder import ClassEmbedder

# The paper's non-uniform (center, pow) for LDM-4-G over 250 DDIM steps, by cache interval.
LDM4G_NONUNIFORM = {2: (120, 1.2), 3: (120, 1.2), 5: (110, 1.4), 10: (110, 1.2), 20: (120, 1.4)}

_OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class LDMClassConditionalPipeline(DiffusionPipeline):
    r"""Class-conditional image generation with latent diffusion (LDM-4-G, arXiv 2112.10752), without caching.

    Args:
        vqvae ([`VQModel`]): the first stage; latents are quantized to its codebook as they are decoded.
        unet ([`UNet2DConditionModel`]): denoises latents, cross-attending to the class token.
        class_embedder ([`~deepcache.ldm.ClassEmbedder`]): class label -> token; its null class is the
            unconditional input of guidance.
        scheduler ([`SchedulerMixin`]): CompVis samples with DDIM (what the converter sets); any diffusers
            scheduler works.
    """

    model_cpu_offload_seq = "class_embedder->unet->vqvae"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self, vqvae: VQModel, unet: UNet2DConditionModel, class_embedder: ClassEmbedder, scheduler: SchedulerMixin
    ):
        super().__init__()
        self.register_modules(vqvae=vqvae, unet=unet, class_embedder=class_embedder, scheduler=scheduler)
        self.image_processor = VaeImageProcessor(vae_scale_factor=2 ** (len(vqvae.config.block_out_channels) - 1))

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | list[int] | torch.Tensor,
        num_inference_steps: int = 250,
        guidance_scale: float = 1.5,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature; never mutated)
    ) -> ImagePipelineOutput | tuple:
        r"""Generates one image per class label.

        Args:
            class_labels (`int`, `list[int]` or `torch.Tensor`): the classes to draw (ImageNet indices 0-999
                for ``cin256-v2``), one image each.
            num_inference_steps (`int`, defaults to 250): denoising steps; 250 DDIM steps is the LDM-4-G setting
                the DeepCache paper measures.
            guidance_scale (`float`, defaults to 1.5): classifier-free guidance against the null class, on when
                > 1 (the paper's LDM-4-G runs use 1.5; CompVis' notebook 3.0).
            eta (`float`, defaults to 0.0): DDIM's eta; other schedulers ignore it.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): makes generation deterministic.
            latents (`torch.Tensor`, *optional*): initial noise, ``(len(class_labels), C, H, W)``; drawn if not given.
            output_type (`str`, defaults to `"pil"`): ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            return_dict (`bool`, defaults to `True`): an [`ImagePipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): called at
                each step's end as ``callback_on_step_end(pipe, step, timestep, callback_kwargs)``; may return new
                ``latents``.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["latents"]`): the tensors passed in
                ``callback_kwargs``.

        Returns:
            [`ImagePipelineOutput`] or `tuple`: the images.

        Example:
            ```py
            >>> from deepcache import LDMClassConditionalPipeline
            >>> # a folder from scripts/convert_ldm_class_conditional.py
            >>> pipe = LDMClassConditionalPipeline.from_pretrained("./ldm-cin256-v2")
            >>> images = pipe(class_labels=[88, 207, 279, 980]).images
            ```
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        labels = self._check_inputs(
            class_labels, num_inference_steps, guidance_scale, latents, output_type, callback_on_step_end_tensor_inputs
        )
        device = self._execution_device
        self._guidance_scale = guidance_scale
        guided = self.do_classifier_free_guidance
        batch, labels = len(labels), labels.to(device)
        if guided:  # CompVis' order: unconditional first
            labels = torch.cat([torch.full_like(labels, self.class_embedder.config.null_class), labels])
        context = self.class_embedder(labels).to(self.unet.dtype)

        shape = (batch, self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        latents = latents.to(device=device, dtype=self.unet.dtype) * self.scheduler.init_noise_sigma

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        step_parameters = inspect.signature(self.scheduler.step).parameters
        step_kwargs = {
            name: value for name, value in (("eta", eta), ("generator", generator)) if name in step_parameters
        }
        self._num_timesteps = len(self.scheduler.timesteps)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = self.scheduler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
            noise_pred = self.unet(model_input, t, encoder_hidden_states=context).sample
            if guided:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                tensors = {"latents": latents}
                callback_kwargs = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                latents = callback_on_step_end(self, i, t, callback_kwargs).pop("latents", latents)

        if output_type == "latent":
            images = latents
        else:
            decoded = self.vqvae.decode(latents / self.vqvae.config.scaling_factor).sample
            images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def _check_inputs(
        self, class_labels, num_inference_steps, guidance_scale, latents, output_type, tensor_inputs
    ) -> torch.Tensor:
        """Every argument checked before any denoising; the labels as a 1-D long tensor."""
        try:
            labels = torch.as_tensor(class_labels).cpu()
        except (TypeError, ValueError, RuntimeError):
            labels = None
        if labels is not None and labels.ndim == 0:
            labels = labels[None]
        num_classes, null_class = self.class_embedder.config.num_classes, self.class_embedder.config.null_class
        if (
            labels is None
            or labels.ndim != 1
            or len(labels) == 0
            or labels.is_floating_point()
            or labels.is_complex()
            or labels.dtype == torch.bool
        ):
            raise TypeError(
                f"`class_labels` must be an int or a non-empty 1-D sequence of ints, but got {class_labels!r}."
            )
        labels = labels.long()
        if not ((labels >= 0) & (labels < num_classes)).all():
            raise ValueError(f"`class_labels` must lie in [0, {num_classes}), but got {labels.tolist()}.")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer, but got {num_inference_steps!r}.")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
            raise TypeError(f"`guidance_scale` must be a number, but got {guidance_scale!r}.")
        if guidance_scale > 1 and null_class is None:
            raise ValueError(
                "`guidance_scale` > 1 needs a null class, but this pipeline's `class_embedder` has none; use "
                "`guidance_scale=1`."
            )
        size, channels = self.unet.config.sample_size, self.unet.config.in_channels
        if latents is not None and tuple(latents.shape) != (len(labels), channels, size, size):
            raise ValueError(
                f"`latents` must have shape {(len(labels), channels, size, size)} (one per class label), but got "
                f"{tuple(latents.shape)}."
            )
        if output_type not in _OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {_OUTPUT_TYPES}, but got {output_type!r}.")
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` must be among {self._callback_tensor_inputs}, but got {unknown}."
            )
        return labels

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps


class DeepCacheLDMClassConditionalPipeline(DeepCachePipelineMixin, LDMClassConditionalPipeline):
    """:class:`LDMClassConditionalPipeline` (LDM-4-G) with DeepCache's arguments.

    ``deepcache_defaults``: the paper's 4.1x row, interval 5 over 250 DDIM steps, branch 0 (its LDM
    code runs only the first input block and the last output block on cached steps), uniform. The
    paper's non-uniform ``(center, pow)`` for other intervals are in ``LDM4G_NONUNIFORM``.

    Example:
        ```py
        >>> from deepcache import LDM4G_NONUNIFORM, DeepCacheLDMClassConditionalPipeline
        >>> pipe = DeepCacheLDMClassConditionalPipeline.from_pretrained("./ldm-cin256-v2")
        >>> images = pipe(class_labels=[88, 207], **pipe.deepcache_defaults.as_kwargs()).images
        >>> center, pow = LDM4G_NONUNIFORM[10]
        >>> setting = dict(cache_interval=10, cache_branch_id=0, uniform=False, center=center, pow=pow)
        >>> images = pipe(class_labels=[88, 207], **setting).images
        ```
    """

    deepcache_defaults = DeepCacheConfig(cache_interval=5, cache_branch_id=0)
