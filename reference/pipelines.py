"""Seeded, offline builders of real diffusers models and pipelines, tiny (tests) and medium (benchmarks).

No weights are downloaded: every part is built from a config with seeded random weights; saving with
``save_pretrained`` and loading with ``from_pretrained(local_dir)`` is the real loading path.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

#: Words of the offline T5 vocabulary used by the audio pipelines.
_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "and",
    "with",
    "in",
    "on",
    "hammer",
    "hitting",
    "wooden",
    "surface",
    "dog",
    "barking",
    "rain",
    "piano",
    "drums",
    "guitar",
    "loud",
    "soft",
    "low",
    "quality",
    "noise",
    "music",
    "beat",
    "ambient",
    "bird",
    "song",
    "car",
    "engine",
    "water",
    "tone",
    "chord",
    "chirp",
    "hit",
]

#: StableAudioDiTModel sizes: (layers, heads, kv heads, head dim, latent frames).
STABLE_AUDIO_SIZES = {
    "tiny": (2, 4, 2, 8, 32),
    "medium": (8, 4, 2, 64, 256),
}

#: stable-audio-tools DiffusionTransformer sizes: (depth, heads, width, conditioning width).
TOOLS_SIZES = {
    "tiny": (2, 4, 128, 64),
}

#: STDiT3 sizes: (depth, width, heads, frames, latent side, caption width, caption tokens).
STDIT3_SIZES = {
    "tiny": (2, 64, 4, 4, 8, 32, 10),
    "medium": (4, 128, 4, 8, 16, 64, 16),
}

#: MMDiT sizes: (double blocks, single blocks, width, heads, RoPE axes, frames, latent side, text tokens).
MMDIT_SIZES = {
    "tiny": (1, 1, 64, 4, [4, 6, 6], 2, 8, 7),
    "medium": (2, 4, 256, 4, [16, 24, 24], 4, 16, 32),
}

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
    latents = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(seed)).to(device, transformer.dtype)
    labels = torch.tensor([label, transformer.config.num_embeds_ada_norm], device=device)
    with torch.no_grad():
        for t in scheduler.timesteps:
            timestep = t.expand(2).to(device)
            out = transformer(torch.cat([latents, latents]), timestep=timestep, class_labels=labels).sample
            eps_c, eps_u = out[:, :4].chunk(2)
            latents = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, latents).prev_sample
    return latents


def t5_tokenizer(model_max_length: int = 16):
    """A T5 tokenizer from an in-memory unigram vocabulary: no sentencepiece file, no download."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -5.0 - 0.01 * i) for i, word in enumerate(_WORDS)]
    vocab += [(character, -10.0) for character in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def stable_audio_transformer(size: str = "tiny", seed: int = 0, conditioning_width: int = 16):
    """A diffusers ``StableAudioDiTModel`` (self-attention with RoPE, GQA cross-attention, SwiGLU)."""
    from diffusers import StableAudioDiTModel

    layers, heads, kv_heads, head_dim, frames = STABLE_AUDIO_SIZES[size]
    torch.manual_seed(seed)
    return StableAudioDiTModel(
        sample_size=frames,
        in_channels=4,
        out_channels=4,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        num_key_value_attention_heads=kv_heads,
        cross_attention_dim=conditioning_width,
        time_proj_dim=16,
        global_states_input_dim=2 * conditioning_width,
        cross_attention_input_dim=conditioning_width,
    ).eval()


def stable_audio_rotary_embedding(model) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE as ``StableAudioPipeline`` builds it for ``model``: half the head dimension, frames + 1
    positions (the prepended global token)."""
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    config = model.config
    return get_1d_rotary_pos_embed(config.attention_head_dim // 2, config.sample_size + 1, use_real=True, repeat_interleave_real=False)


def denoise_stable_audio(
    model,
    scheduler,
    latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    global_hidden_states: torch.Tensor,
    guidance: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """``StableAudioPipeline``'s denoising loop on a bare ``StableAudioDiTModel``: one call per step on
    the batch [uncond, cond] (the conditioning tensors already hold both halves), the timestep
    positionally with shape [1], ``scale_model_input``, guidance on the output, ``scheduler.step`` with
    ``generator`` (it seeds the SDE noise). ``scheduler`` has its timesteps set; returns the latents."""
    rotary = tuple(part.to(latents.device) for part in stable_audio_rotary_embedding(model))
    with torch.no_grad():
        for t in scheduler.timesteps:
            latent_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            out = model(
                latent_in,
                t.unsqueeze(0),
                encoder_hidden_states=encoder_hidden_states,
                global_hidden_states=global_hidden_states,
                rotary_embedding=rotary,
                return_dict=False,
            )[0]
            uncond, cond = out.chunk(2)
            latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents, generator=generator).prev_sample
    return latents


def stable_audio_pipeline(size: str = "tiny", seed: int = 0):
    """A ``StableAudioPipeline`` of tiny parts: T5 encoder and tokenizer, projection model, Oobleck VAE,
    ``CosineDPMSolverMultistepScheduler`` (as Stable Audio Open) and a StableAudioDiTModel."""
    from diffusers import AutoencoderOobleck, CosineDPMSolverMultistepScheduler, StableAudioPipeline, StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=24,
            d_kv=8,
            d_ff=48,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=3,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            dropout_rate=0.0,
            feed_forward_proj="relu",
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    ).eval()
    torch.manual_seed(seed + 1)
    projection = StableAudioProjectionModel(text_encoder_dim=24, conditioning_dim=16, min_value=0, max_value=512)
    transformer = stable_audio_transformer(size, seed + 2)
    torch.manual_seed(seed + 3)
    vae = AutoencoderOobleck(
        encoder_hidden_size=8,
        downsampling_ratios=[2, 2],
        channel_multiples=[1, 2],
        decoder_channels=8,
        decoder_input_channels=4,
        audio_channels=2,
        sampling_rate=16,
    ).eval()
    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=0.3,
        sigma_max=500,
        sigma_data=1.0,
        sigma_schedule="exponential",
        solver_order=2,
        prediction_type="v_prediction",
        rho=7.0,
        final_sigmas_type="zero",
    )
    return StableAudioPipeline(
        vae=vae,
        text_encoder=text_encoder,
        projection_model=projection,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=scheduler,
    )


def import_stable_audio_tools_dit():
    """stable-audio-tools' ``DiffusionTransformer`` class, importing the package without its global side
    effects: it switches on ``torch._dynamo.config.suppress_errors`` (hiding compile failures) and raises
    the recompile limit, and prints a notice when flash-attn is missing."""
    import contextlib
    import io

    import torch._dynamo

    saved = (torch._dynamo.config.suppress_errors, torch._dynamo.config.cache_size_limit)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from stable_audio_tools.models.dit import DiffusionTransformer
    finally:
        torch._dynamo.config.suppress_errors, torch._dynamo.config.cache_size_limit = saved
    return DiffusionTransformer


def stable_audio_tools_transformer(size: str = "tiny", seed: int = 0, global_cond_type: str = "prepend"):
    """stable-audio-tools' ``DiffusionTransformer`` (the real class), with its zero-initialised branch
    outputs and convolutions randomised so that caching them is not trivially exact."""
    DiffusionTransformer = import_stable_audio_tools_dit()
    depth, heads, width, conditioning = TOOLS_SIZES[size]
    torch.manual_seed(seed)
    model = DiffusionTransformer(
        io_channels=8,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        cond_token_dim=conditioning,
        global_cond_dim=12,
        project_cond_tokens=False,
        transformer_type="continuous_transformer",
        global_cond_type=global_cond_type,
        zero_init_branch_outputs=False,
    )
    randomize_zero_parameters(model, seed=seed + 1)
    return model.eval()


def stdit3(size: str = "tiny", seed: int = 0):
    """Open-Sora v1.2 ``STDiT3`` (re-implementation, original attribute names) with seeded weights;
    the temporal blocks' zero-initialised projections and the fps embedder are randomised."""
    from .opensora_v12 import STDiT3, STDiT3Config

    depth, width, heads, _, _, caption, tokens = STDIT3_SIZES[size]
    torch.manual_seed(seed)
    model = STDiT3(
        STDiT3Config(
            depth=depth,
            hidden_size=width,
            num_heads=heads,
            patch_size=(1, 2, 2),
            in_channels=4,
            caption_channels=caption,
            model_max_length=tokens,
            qk_norm=True,
        )
    )
    randomize_zero_parameters(model, seed=seed + 1)
    return model.eval()


def sample_stdit3(model, steps: int, seed: int = 0, samples: int = 1, guidance: float = 7.0, size: str = "tiny") -> torch.Tensor:
    """Open-Sora v1.2's RFLOW sampler: timesteps ``(1 - i/N) * 1000``, guidance as one batch
    [cond, uncond] with the learnt null caption, ``x_mask`` all True (text-to-video), ``z += v dt``."""
    _, _, _, frames, side, caption, tokens = STDIT3_SIZES[size]
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, 4, frames, side, side, generator=generator)
    prompt = torch.randn(samples, 1, tokens, caption, generator=generator)
    null = model.y_embedder.y_embedding[None, None].expand(samples, 1, tokens, caption)
    extra = {
        "y": torch.cat([prompt, null]),
        "mask": torch.ones(samples, tokens, dtype=torch.long),
        "x_mask": torch.ones(2 * samples, frames, dtype=torch.bool),
        "fps": torch.full((samples,), 24.0),
        "height": torch.full((samples,), side * 8.0),
        "width": torch.full((samples,), side * 8.0),
    }
    timesteps = [(1.0 - i / steps) * 1000.0 for i in range(steps)]
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            out = model(torch.cat([z, z]), torch.full((2 * samples,), t), **extra)
            cond, uncond = out.chunk(2, dim=1)[0].chunk(2, dim=0)
            velocity = uncond + guidance * (cond - uncond)
            dt = (t - timesteps[i + 1]) if i + 1 < steps else t
            z = z + velocity * dt / 1000.0
    return z


def mmdit(size: str = "tiny", seed: int = 0, fused: bool = False):
    """Open-Sora 2.0 ``MMDiTModel`` (re-implementation, original attribute names) with seeded weights.

    ``fused=False`` is the released video model's layout (separate q/k/v, Liger RoPE, image
    conditioning input); ``fused=True`` the Flux-style one (fused qkv, interleaved RoPE, guidance
    embedding)."""
    from .opensora_v2 import MMDiTConfig, MMDiTModel

    double, single, width, heads, axes, _, _, _ = MMDIT_SIZES[size]
    torch.manual_seed(seed)
    model = MMDiTModel(
        MMDiTConfig(
            in_channels=16,
            vec_in_dim=12,
            context_in_dim=24,
            hidden_size=width,
            num_heads=heads,
            depth=double,
            depth_single_blocks=single,
            axes_dim=axes,
            fused_qkv=fused,
            use_liger_rope=not fused,
            cond_embed=not fused,
            guidance_embed=fused,
        )
    )
    randomize_zero_parameters(model, seed=seed + 1)
    return model.eval()


def sample_mmdit(
    model, steps: int, seed: int = 0, samples: int = 1, text_scale: float = 7.5, image_scale: float = 3.0, size: str = "tiny"
) -> torch.Tensor:
    """Open-Sora 2.0's denoiser for text-to-video: timesteps ``linspace(1, 0, N + 1)``, guidance as one
    batch [cond, uncond, uncond] (text, negative, negative; image condition on the first two), and
    ``img += (t_prev - t) * v``. The Flux-style variant gets its distilled guidance instead."""
    _, _, _, _, _, frames, side, tokens = MMDIT_SIZES[size]
    generator = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(torch.arange(frames), torch.arange(side // 2), torch.arange(side // 2), indexing="ij"), -1)
    img_ids = grid.reshape(1, -1, 3).float().expand(3 * samples, -1, -1)
    length = img_ids.shape[1]
    img = torch.randn(samples, length, 16, generator=generator)
    prompt = torch.randn(samples, tokens, 24, generator=generator)
    negative = torch.randn(samples, tokens, 24, generator=generator)
    extra = {
        "img_ids": img_ids,
        "txt": torch.cat([prompt, negative, negative]),
        "txt_ids": torch.zeros(3 * samples, tokens, 3),
        "y_vec": torch.randn(samples, 12, generator=generator).repeat(3, 1),
    }
    if model.config.cond_embed:
        condition = torch.randn(samples, length, 20, generator=generator)
        extra["cond"] = torch.cat([condition, condition, torch.zeros_like(condition)])
    if model.config.guidance_embed:
        extra["guidance"] = torch.full((3 * samples,), 4.0)
    timesteps = torch.linspace(1, 0, steps + 1).tolist()
    with torch.no_grad():
        for t, t_prev in itertools.pairwise(timesteps):
            out = model(img=torch.cat([img, img, img]), timesteps=torch.full((3 * samples,), t), **extra)
            cond, uncond_image, uncond = out.chunk(3)
            velocity = uncond + image_scale * (uncond_image - uncond) + text_scale * (cond - uncond_image)
            img = img + (t_prev - t) * velocity
    return img
