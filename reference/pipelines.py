"""Seeded, offline builders of real diffusers models and pipelines, tiny (tests) and medium (benchmarks).

No weights are downloaded: every part is built from a config with seeded random weights; saving with
``save_pretrained`` and loading with ``from_pretrained(local_dir)`` is the real loading path.
"""

from __future__ import annotations

import torch
from torch import nn

#: DiT transformer sizes: (layers, heads, head dim, latent side, patch).
DIT_SIZES = {
    "tiny": (2, 2, 16, 8, 2),
    "medium": (8, 4, 64, 32, 2),
}


def randomize_zero_parameters(model: nn.Module, seed: int = 0, std: float = 0.02) -> int:
    """Give every all-zero parameter random values; return how many were changed.

    Reference architectures zero-initialise gates and output layers (adaLN-Zero); with those zeros a
    cached and an uncached block give the same output, and a test comparing them proves nothing.
    """
    generator = torch.Generator().manual_seed(seed)
    changed = 0
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() and not parameter.any():
                noise = torch.randn(parameter.shape, generator=generator) * std
                parameter.copy_(noise.to(parameter.dtype))
                changed += 1
    return changed


def dit_transformer(size: str = "tiny", seed: int = 0, num_classes: int = 1000):
    """A class-conditional diffusers ``DiTTransformer2DModel`` (learned sigma, as DiT-XL/2)."""
    from diffusers import DiTTransformer2DModel

    layers, heads, head_dim, side, patch = DIT_SIZES[size]
    torch.manual_seed(seed)
    return DiTTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=4,
        out_channels=8,
        num_layers=layers,
        sample_size=side,
        patch_size=patch,
        num_embeds_ada_norm=num_classes,
        norm_type="ada_norm_zero",
    ).eval()


def dit_pipeline(size: str = "tiny", seed: int = 0):
    """A ``DiTPipeline`` from a DiT transformer, a tiny ``AutoencoderKL`` and a DDIM scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline

    transformer = dit_transformer(size, seed)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=transformer.config.sample_size * 2,
    ).eval()
    return DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler())


def sample_dit(transformer, steps: int, label: int = 7, seed: int = 0, guidance: float = 4.0) -> torch.Tensor:
    """DDIM over a DiT transformer with classifier-free guidance as one batch (cond, uncond), as
    ``DiTPipeline`` does, without the VAE: the denoising loop that caching accelerates."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler()
    scheduler.set_timesteps(steps)
    side = transformer.config.sample_size
    device = transformer.device
    latents = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(seed)).to(device)
    labels = torch.tensor([label, transformer.config.num_embeds_ada_norm], device=device)
    with torch.no_grad():
        for t in scheduler.timesteps:
            timestep = t.expand(2).to(device)
            out = transformer(torch.cat([latents, latents]), timestep=timestep, class_labels=labels).sample
            eps_c, eps_u = out[:, :4].chunk(2)
            latents = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, latents).prev_sample
    return latents
