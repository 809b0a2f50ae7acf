"""The solvers people sample with, built from one pipeline's scheduler config, and three checks that a model
suits them: how fast each solver converges to its own many-step result, how well the model predicts the
noise in each band of timesteps, and how steep guidance makes the prediction in the noisy latent.

A solver that has converged changes its samples little when given more steps; on Stable Diffusion DDIM,
PNDM and DPM-Solver++ 2M at 25 steps are all close to their 200-step samples. Multistep solvers, which
extrapolate from earlier predictions, fail first where the guided prediction is steep, and solvers whose
last model call moves with the step count converge only as well as the model denoises at low noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from ..measurement.fidelity import mean_psnr
from .parallel import sample_images


@dataclass(frozen=True)
class Solver:
    """A diffusers scheduler class and the settings that make it the named solver, on top of a pipeline's
    own scheduler config (so spacing, betas and offsets stay the model's)."""

    label: str
    scheduler_class: type
    settings: dict = field(default_factory=dict)
    stochastic: bool = False  # fresh noise every step: it converges in distribution, not sample by sample

    def scheduler(self, config):
        return self.scheduler_class.from_config(config, **self.settings)


SOLVERS = {
    "ddim": Solver("DDIM", DDIMScheduler),
    "plms": Solver("PLMS", PNDMScheduler, {"skip_prk_steps": True}),
    "dpm++": Solver(
        "DPM-Solver++ 2M", DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}
    ),
    "dpm++karras": Solver(
        "DPM-Solver++ 2M Karras",
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "euler": Solver("Euler", EulerDiscreteScheduler),
    "euler-karras": Solver("Euler Karras", EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    "euler-a": Solver("Euler ancestral", EulerAncestralDiscreteScheduler, stochastic=True),
    "unipc": Solver("UniPC", UniPCMultistepScheduler),
}

TIMESTEP_BANDS = ((0, 20), (20, 50), (50, 100), (100, 200), (200, 400), (400, 700), (700, 1000))


def check_solvers(names) -> list[str]:
    unknown = [n for n in names if n not in SOLVERS]
    if unknown:
        raise ValueError(f"`solvers` must be among {sorted(SOLVERS)}, but got {unknown}.")
    return list(names)


def convergence(
    pipe,
    prompts: list[str],
    solvers=tuple(SOLVERS),
    steps=(15, 25, 50),
    reference_steps: int = 200,
    guidance_scales=(5.0, 7.5),
    batch_size: int = 32,
    progress=None,
) -> list[dict]:
    """One row per solver, guidance and step count: the mean PSNR (dB) of its samples against the same
    solver's ``reference_steps`` samples from the same noise, and (at ``reference_steps``) against DDIM's.

    Prompt ``i`` samples with seed ``i``. ``pipe``'s scheduler config is the base of every solver; the
    pipeline's own scheduler is put back afterwards. ``progress(text)`` is called before each run.
    """
    solvers = check_solvers(solvers)
    if any(s < 1 or s >= reference_steps for s in steps):
        raise ValueError(
            f"`steps` must be between 1 and `reference_steps` - 1 ({reference_steps - 1}), but got {steps}."
        )
    own, base = pipe.scheduler, pipe.scheduler.config
    seeds = list(range(len(prompts)))
    rows, references = [], {}
    try:
        for guidance in guidance_scales:
            for name in ["ddim", *[s for s in solvers if s != "ddim"]]:
                pipe.scheduler = SOLVERS[name].scheduler(base)
                samples = {}
                for count in (reference_steps, *steps):
                    if progress:
                        progress(f"{name}, guidance {guidance:g}, {count} steps")
                    samples[count] = sample_images(
                        pipe, seeds, batch_size, prompts, num_inference_steps=count, guidance_scale=guidance
                    )
                references[name, guidance] = samples[reference_steps]
                if name not in solvers:
                    continue
                versus_ddim = mean_psnr(references["ddim", guidance], samples[reference_steps])
                for count in steps:
                    rows.append(
                        dict(
                            solver=name,
                            label=SOLVERS[name].label,
                            stochastic=SOLVERS[name].stochastic,
                            guidance=guidance,
                            steps=count,
                            reference_steps=reference_steps,
                            psnr=mean_psnr(samples[reference_steps], samples[count]),
                            reference_vs_ddim=versus_ddim,
                        )
                    )
    finally:
        pipe.scheduler = own
    return rows


@torch.no_grad()
def denoising_error(
    pipe,
    images: torch.Tensor,
    captions: list[str],
    bands=TIMESTEP_BANDS,
    draws: int = 2,
    seed: int = 0,
    batch_size: int = 128,
) -> list[dict]:
    """The model's noise-prediction error per band of training timesteps on ``images`` (N, 3, H, W) in [-1, 1]
    with their captions: the mean squared error of the predicted noise (what the loss sees), and the same
    error carried to the clean latent, (1 - alpha_bar) / alpha_bar times it (what a sample keeps).

    Latents are the autoencoder's posterior means; each image gets ``draws`` noise draws per band, at
    timesteps drawn uniformly in it.
    """
    if len(images) != len(captions):
        raise ValueError(f"`images` and `captions` must pair up, but got {len(images)} images and {len(captions)}.")
    noising = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = noising.alphas_cumprod
    generator = torch.Generator().manual_seed(seed)
    device = pipe.device
    latents = torch.cat([pipe.vae.encode(chunk.to(device)).latent_dist.mean for chunk in images.split(batch_size)])
    latents = latents * pipe.vae.config.scaling_factor
    text = _text_embeddings(pipe, captions, batch_size)
    rows = []
    for low, high in bands:
        noise_errors, latent_errors = [], []
        for _ in range(draws):
            for start in range(0, len(latents), batch_size):
                clean = latents[start : start + batch_size]
                timesteps = torch.randint(low, high, (len(clean),), generator=generator)
                noise = torch.randn(clean.shape, generator=generator)
                noisy = noising.add_noise(clean, noise.to(device), timesteps.to(device))
                predicted = pipe.unet(
                    noisy, timesteps.to(device), encoder_hidden_states=text[start : start + batch_size]
                )
                error = (predicted.sample - noise.to(device)).pow(2).mean(dim=(1, 2, 3)).cpu()
                noise_errors.append(error)
                latent_errors.append(error * (1 - alphas[timesteps]) / alphas[timesteps])
        rows.append(
            dict(
                band=[low, high],
                noise_mse=torch.cat(noise_errors).mean().item(),
                latent_mse=torch.cat(latent_errors).mean().item(),
            )
        )
    return rows


@torch.no_grad()
def guidance_stiffness(
    pipe,
    prompts: list[str],
    timesteps=(901, 801, 601, 401, 201, 81),
    guidance_scale: float = 7.5,
    iterations: int = 8,
    step: float = 1e-2,
    seed: int = 0,
) -> list[dict]:
    """How steeply the noise prediction changes with the noisy latent, per timestep: the dominant eigenvalue's
    magnitude of its Jacobian (power iteration on finite differences, mean over ``prompts``) for the
    unconditional prediction, the conditional one, their difference, and the guided ``u + s (c - u)``.

    At high noise the unconditional and conditional ones are about 1. Where they depend on the latent in
    different ways (a caption that pins down one image, say), guidance multiplies the difference by ``s``:
    the sampling ODE turns stiff, and multistep solvers that extrapolate from earlier steps (PLMS,
    DPM-Solver++) become unstable at 25 steps while DDIM does not.
    """
    device = pipe.device
    generator = torch.Generator().manual_seed(seed)
    text = _text_embeddings(pipe, [*prompts, *[""] * len(prompts)])
    config = pipe.unet.config
    shape = (len(prompts), config.in_channels, config.sample_size, config.sample_size)
    rows = []
    for timestep in timesteps:
        latents = torch.randn(shape, generator=generator).to(device)  # at high noise a noisy latent is nearly noise

        def predictions(x, timestep=timestep):
            unconditional, conditional = pipe.unet(
                torch.cat([x, x]), timestep, encoder_hidden_states=text
            ).sample.chunk(2)
            return {
                "unconditional": unconditional,
                "conditional": conditional,
                "difference": conditional - unconditional,
                "guided": unconditional + guidance_scale * (conditional - unconditional),
            }

        base = predictions(latents)
        row = dict(timestep=timestep, guidance_scale=guidance_scale)
        start = torch.randn(shape, generator=generator).to(device)
        for name in base:
            direction = start
            for _ in range(iterations):
                direction = direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                direction = (predictions(latents + step * direction)[name] - base[name]) / step
            row[name] = direction.flatten(1).norm(dim=1).mean().item()
        rows.append(row)
    return rows


def _text_embeddings(pipe, texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """The pipeline's text-encoder states for ``texts``, padded to the tokenizer's length, in chunks."""
    tokens = pipe.tokenizer(
        texts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return torch.cat([pipe.text_encoder(chunk.to(pipe.device))[0] for chunk in tokens.split(batch_size)])
