"""Zoo cases: the video transformers of LTX, Latte, Mochi, Sana video, SkyReels-V2 and Wan, and the audio
transformers of ACE-Step, LongCat, MiniMax Music and Stable Audio.

Besides one case per class, the per-token and per-frame timestep modes real pipelines use have their own
cases: image-to-video conditioning (LTX-Video, LTX-2, Sana video, Wan 2.2 TI2V; SANA-WM always) keeps the
conditioning frame's tokens at t=0, and SkyReels-V2 diffusion forcing gives every causal block of frames its
own timestep. Each inputs function mirrors what the pipeline (``diffusers/pipelines/...``) passes; the tiny
sizes follow diffusers' model tests. ``TransformerTemporalModel`` is listed with the reason it is not served.

A few pipelines pass ``t`` in a second argument as well (LTX-2's ``sigma`` / ``audio_timestep``, ACE-Step's
``timestep_r``). A case has one timestep argument, so those arguments are tensors created by ``inputs``
that ``make_timestep`` fills in place with the same ``t``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from smoothcache.reference.zoo import ZooCase, default_timestep, default_update

BATCH = 2


def randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


def text_mask(batch: int, length: int, padding: int = 2) -> torch.Tensor:
    """A prompt mask as tokenizers return it: the first sample padded at the end, the others full."""
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, length - padding :] = False
    return mask


def reversed_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """For models trained with 0 = noise, 1 = data on [0, 1] (LongCat, MiniMax)."""
    return default_timestep(1.0 - t, inputs)


def update_leading_channels(latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """For inputs that carry conditioning channels after the noisy ones (Wan I2V, Wan-Animate): only the
    first ``prediction.shape[1]`` channels are the latent; the conditioning channels stay as they are."""
    channels = prediction.shape[1]
    return torch.cat([latent[:, :channels] - 0.1 * prediction, latent[:, channels:]], dim=1)


def keep_first_frame(latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """Image-to-video on [B, C, F, H, W] latents: the conditioning frame 0 is never stepped."""
    stepped = default_update(latent, prediction)
    return torch.cat([latent[:, :, :1], stepped[:, :, 1:]], dim=2)


# ----------------------------------------------------------------------------------------------------------
# LTX-Video: packed tokens [B, F*H*W, C]; t in [0, 1000].

LTX_FRAMES, LTX_HEIGHT, LTX_WIDTH = 3, 4, 4
LTX_TOKENS_PER_FRAME = LTX_HEIGHT * LTX_WIDTH

LTX_CONFIG = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=8,
    cross_attention_dim=16,
    num_layers=2,
    qk_norm="rms_norm_across_heads",
    caption_channels=16,
)


def ltx_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, LTX_FRAMES * LTX_TOKENS_PER_FRAME, 4),
        encoder_hidden_states=randn(generator, BATCH, 8, 16),
        encoder_attention_mask=text_mask(BATCH, 8),
        num_frames=LTX_FRAMES,
        height=LTX_HEIGHT,
        width=LTX_WIDTH,
        # (VAE temporal compression / frame rate, spatial compression, spatial compression), as the pipeline.
        rope_interpolation_scale=(8 / 25, 32, 32),
        return_dict=False,
    )


def first_frame_token_mask(inputs: dict[str, Any]) -> torch.Tensor:
    """[B, tokens]: 1 on the first latent frame's tokens (the conditioning image), 0 elsewhere."""
    batch, tokens = inputs["hidden_states"].shape[:2]
    mask = torch.zeros(batch, tokens)
    mask[:, :LTX_TOKENS_PER_FRAME] = 1.0
    return mask


def ltx_i2v_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """LTXImageToVideoPipeline: ``t.expand(B).unsqueeze(-1) * (1 - conditioning_mask)``, shape [B, tokens]."""
    return float(t) * (1.0 - first_frame_token_mask(inputs))


def ltx_keep_conditioning_tokens(latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """The image-to-video pipelines step only the tokens after the conditioning frame."""
    stepped = latent - 0.1 * prediction
    return torch.cat([latent[:, :LTX_TOKENS_PER_FRAME], stepped[:, LTX_TOKENS_PER_FRAME:]], dim=1)


# ----------------------------------------------------------------------------------------------------------
# LTX-2: joint audio-video; video tokens [B, F*H*W, C], audio tokens [B, L, C]; t in [0, 1000].

LTX2_AUDIO_FRAMES = 5

LTX2_CONFIG = dict(
    in_channels=4,
    out_channels=4,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=2,
    attention_head_dim=8,
    cross_attention_dim=16,
    audio_in_channels=4,
    audio_out_channels=4,
    audio_num_attention_heads=2,
    audio_attention_head_dim=4,
    audio_cross_attention_dim=8,
    num_layers=2,
    qk_norm="rms_norm_across_heads",
    caption_channels=16,
    rope_double_precision=False,
)


def ltx2_inputs(generator: torch.Generator) -> dict[str, Any]:
    mask = text_mask(BATCH, 8)
    return dict(
        hidden_states=randn(generator, BATCH, LTX_FRAMES * LTX_TOKENS_PER_FRAME, 4),
        audio_hidden_states=randn(generator, BATCH, LTX2_AUDIO_FRAMES, 4),
        encoder_hidden_states=randn(generator, BATCH, 8, 16),
        audio_encoder_hidden_states=randn(generator, BATCH, 8, 16),
        # Filled with t by make_timestep: the pipeline passes ``sigma=timestep``.
        sigma=torch.zeros(BATCH),
        encoder_attention_mask=mask,
        audio_encoder_attention_mask=mask,
        # The pipeline also passes video/audio coords precomputed from these same numbers; the forward
        # builds identical ones from them.
        num_frames=LTX_FRAMES,
        height=LTX_HEIGHT,
        width=LTX_WIDTH,
        fps=24.0,
        audio_num_frames=LTX2_AUDIO_FRAMES,
        isolate_modalities=False,
        use_cross_timestep=True,  # the pipelines' default
        return_dict=False,
    )


def ltx2_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    inputs["sigma"].fill_(float(t))
    return default_timestep(t, inputs)


# LTX-2.3: gated attention, prompt cross-attention modulated by sigma (``prompt_adaln``), the STG-ready
# perturbed-attention processor, and connector outputs already at the model width (no caption projection).
LTX23_CONFIG = {
    **LTX2_CONFIG,
    "gated_attn": True,
    "cross_attn_mod": True,
    "audio_gated_attn": True,
    "audio_cross_attn_mod": True,
    "rope_type": "split",
    "use_prompt_embeddings": False,
    "perturbed_attn": True,
}


def ltx23_inputs(generator: torch.Generator) -> dict[str, Any]:
    inputs = ltx2_inputs(generator)
    inputs["encoder_hidden_states"] = randn(generator, BATCH, 8, 16)  # video width 2 * 8
    inputs["audio_encoder_hidden_states"] = randn(generator, BATCH, 8, 8)  # audio width 2 * 4
    return inputs


def ltx2_i2v_inputs(generator: torch.Generator) -> dict[str, Any]:
    inputs = ltx2_inputs(generator)
    inputs["audio_timestep"] = torch.zeros(BATCH)  # filled with t: audio has no conditioning frame
    return inputs


def ltx2_i2v_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """LTX2ImageToVideoPipeline: ``timestep=t * (1 - conditioning_mask)`` [B, video tokens],
    ``audio_timestep=t`` [B], ``sigma=t`` [B]."""
    inputs["sigma"].fill_(float(t))
    inputs["audio_timestep"].fill_(float(t))
    return ltx_i2v_timestep(t, inputs)


# ----------------------------------------------------------------------------------------------------------
# Latte: spatial and temporal block stacks; DDPM-style integer t in [0, 1000).

LATTE_FRAMES = 3

LATTE_CONFIG = dict(
    sample_size=4,
    num_layers=2,
    patch_size=2,
    attention_head_dim=4,
    num_attention_heads=2,
    caption_channels=8,
    in_channels=4,
    cross_attention_dim=8,
    out_channels=8,
    attention_bias=True,
    activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000,
    norm_type="ada_norm_single",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    video_length=LATTE_FRAMES,  # the temporal position embedding is added per frame, so it must match
)


def latte_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 4, LATTE_FRAMES, 4, 4),
        encoder_hidden_states=randn(generator, BATCH, 8, 8),
        enable_temporal_attentions=True,
        return_dict=False,
    )


def integer_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    return torch.full((inputs["hidden_states"].shape[0],), int(min(t, 999.0)), dtype=torch.long)


# ----------------------------------------------------------------------------------------------------------
# Mochi: the scheduler runs with inverted sigmas, so the model sees 1000 * (1 - sigma): 0 at pure noise.

MOCHI_CONFIG = dict(
    patch_size=2,
    num_attention_heads=2,
    attention_head_dim=8,
    num_layers=2,
    pooled_projection_dim=16,
    in_channels=4,
    out_channels=None,
    qk_norm="rms_norm",
    text_embed_dim=16,
    time_embed_dim=4,
    activation_fn="swiglu",
    max_sequence_length=16,
)


def mochi_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 4, 3, 4, 4),
        encoder_hidden_states=randn(generator, BATCH, 8, 16),
        encoder_attention_mask=text_mask(BATCH, 8),
        return_dict=False,
    )


def mochi_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    return default_timestep(1000.0 - t, inputs)


# ----------------------------------------------------------------------------------------------------------
# Sana video: t in [0, 1000]; image-to-video pins the first latent frame at t=0 per token.

SANA_VIDEO_CONFIG = dict(
    in_channels=16,
    out_channels=16,
    num_attention_heads=2,
    attention_head_dim=12,
    num_layers=2,
    num_cross_attention_heads=2,
    cross_attention_head_dim=12,
    cross_attention_dim=24,
    caption_channels=16,
    mlp_ratio=2.5,
    dropout=0.0,
    attention_bias=False,
    sample_size=8,
    patch_size=(1, 2, 2),
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)


def sana_video_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 16, 3, 4, 4),
        encoder_hidden_states=randn(generator, BATCH, 12, 16),
        encoder_attention_mask=text_mask(BATCH, 12),
        return_dict=False,
    )


def sana_video_i2v_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """SanaImageToVideoPipeline: ``t.expand(mask.shape) * (1 - mask)`` with the conditioning mask shaped
    [B, 1, F, H/2, W/2] (one entry per token), 1 on frame 0."""
    batch, _, frames, height, width = inputs["hidden_states"].shape
    mask = torch.zeros(batch, 1, frames, height // 2, width // 2)
    mask[:, :, 0] = 1.0
    return float(t) * (1.0 - mask)


# ----------------------------------------------------------------------------------------------------------
# Sana-WM stage 1: camera-controlled, per-frame timesteps [B, 1, F] with the anchor frame 0 at t=0.

SANA_WM_FRAMES, SANA_WM_SIZE = 3, 4
SANA_WM_VAE_STRIDE = (8, 32, 32)  # LTX-2 VAE

SANA_WM_CONFIG = dict(
    in_channels=8,
    num_layers=2,
    hidden_size=32,
    num_attention_heads=2,
    linear_head_dim=16,
    softmax_every_n=2,  # block 1 runs the softmax attention variant, block 0 the gated delta net
    caption_channels=16,
    mlp_ratio=2.0,
    chunk_plucker_post_attn_blocks=2,
)


def sana_wm_camera(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Camera tensors as the pipeline builds them: a camera moving forward with a little seeded jitter."""
    from diffusers.pipelines.sana_wm.cam_utils import prepare_camera

    pixel_frames = (SANA_WM_FRAMES - 1) * SANA_WM_VAE_STRIDE[0] + 1
    pixels = SANA_WM_SIZE * SANA_WM_VAE_STRIDE[1]
    poses = torch.eye(4).repeat(pixel_frames, 1, 1)
    poses[:, 2, 3] = 0.05 * torch.arange(pixel_frames)
    poses[:, :3, 3] += 0.01 * randn(generator, pixel_frames, 3)
    intrinsics = torch.tensor([pixels, pixels, pixels / 2, pixels / 2], dtype=torch.float32).repeat(pixel_frames, 1)
    camera = prepare_camera(poses.numpy(), intrinsics.numpy(), target_size=(pixels, pixels), vae_stride=SANA_WM_VAE_STRIDE)
    return {
        "camera_conditions": camera["raymap"].unsqueeze(0).repeat(BATCH, 1, 1),
        "chunk_plucker": camera["chunk_plucker"].unsqueeze(0).repeat(BATCH, 1, 1, 1, 1),
    }


def sana_wm_inputs(generator: torch.Generator) -> dict[str, Any]:
    pixels = SANA_WM_SIZE * SANA_WM_VAE_STRIDE[1]
    return dict(
        hidden_states=randn(generator, BATCH, 8, SANA_WM_FRAMES, SANA_WM_SIZE, SANA_WM_SIZE),
        encoder_hidden_states=randn(generator, BATCH, 1, 8, 16),  # Gemma states, [B, 1, L, D]
        mask=text_mask(BATCH, 8).long(),
        data_info={"img_hw": torch.tensor([[pixels, pixels]], dtype=torch.float)},
        **sana_wm_camera(generator),
        return_dict=False,
    )


def sana_wm_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """SanaWMPipeline: ``min(t, (1 - condition_mask) * 1000)[:, :1, :, 0, 0]``, shape [B, 1, F]."""
    batch, _, frames = inputs["hidden_states"].shape[:3]
    timestep = torch.full((batch, 1, frames), float(t))
    timestep[:, :, 0] = 0.0
    return timestep


# ----------------------------------------------------------------------------------------------------------
# Sana-WM stage 2 refiner (an LTX-2 video stream): denoises one block of frames attending to a KV cache of
# the attention-sink frame and the already refined history; t = sigma * 1000 per token.

REFINER_CONFIG = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=8,
    cross_attention_dim=16,
    audio_in_channels=4,
    audio_out_channels=4,
    audio_num_attention_heads=2,
    audio_attention_head_dim=4,
    audio_cross_attention_dim=8,
    num_layers=2,
    caption_channels=16,
    rope_double_precision=False,
)
REFINER_SINK_FRAMES, REFINER_HISTORY_FRAMES, REFINER_BLOCK_FRAMES = 1, 1, 2
REFINER_FPS = 24.0


def refiner_rotary(batch: int, frame_positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The video RoPE the refiner pipeline builds for absolute frame positions (the rope has no weights, so
    a standalone one with the model's settings gives the model's values)."""
    from diffusers import SanaWMLTX2RefinerTransformer3DModel
    from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMLTX2AudioVideoRotaryPosEmbed

    rope = SanaWMLTX2AudioVideoRotaryPosEmbed(
        dim=REFINER_CONFIG["num_attention_heads"] * REFINER_CONFIG["attention_head_dim"],
        double_precision=REFINER_CONFIG["rope_double_precision"],
        num_attention_heads=REFINER_CONFIG["num_attention_heads"],
    )
    return SanaWMLTX2RefinerTransformer3DModel.build_rotary_emb_for_absolute_positions(
        SimpleNamespace(rope=rope), batch, frame_positions, LTX_HEIGHT, LTX_WIDTH, torch.device("cpu"), REFINER_FPS
    )


def refiner_inputs(generator: torch.Generator) -> dict[str, Any]:
    from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMRefinerKVCache

    inner = REFINER_CONFIG["num_attention_heads"] * REFINER_CONFIG["attention_head_dim"]
    kv_cache = SanaWMRefinerKVCache(REFINER_CONFIG["num_layers"])
    for layer in kv_cache.layer_caches:
        # Pre-RoPE sink K/V (captured once from the stage-1 latents) and post-RoPE refined history.
        layer.store_sink(
            randn(generator, BATCH, REFINER_SINK_FRAMES * LTX_TOKENS_PER_FRAME, inner),
            randn(generator, BATCH, REFINER_SINK_FRAMES * LTX_TOKENS_PER_FRAME, inner),
        )
        layer.store_history(
            randn(generator, BATCH, REFINER_HISTORY_FRAMES * LTX_TOKENS_PER_FRAME, inner),
            randn(generator, BATCH, REFINER_HISTORY_FRAMES * LTX_TOKENS_PER_FRAME, inner),
        )
    # The sink's RoPE slides to sit right before the history: offset = block start - history - sink = 0.
    kv_cache.sink_pe = refiner_rotary(BATCH, list(range(REFINER_SINK_FRAMES)))
    block_start = REFINER_SINK_FRAMES + REFINER_HISTORY_FRAMES
    return dict(
        hidden_states=randn(generator, BATCH, REFINER_BLOCK_FRAMES * LTX_TOKENS_PER_FRAME, 4),
        encoder_hidden_states=randn(generator, BATCH, 8, 16),
        video_rotary_emb=refiner_rotary(BATCH, list(range(block_start, block_start + REFINER_BLOCK_FRAMES))),
        encoder_attention_mask=text_mask(BATCH, 8),
        kv_cache=kv_cache,
        kv_cache_mode="inject",
        return_dict=False,
    )


def per_token_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """Every token at the same t, shape [B, tokens]."""
    return torch.full(inputs["hidden_states"].shape[:2], float(t))


# ----------------------------------------------------------------------------------------------------------
# Wan 2.1 / 2.2 and SkyReels-V2 (a Wan 2.1 derivative): [B, C, F, H, W] latents; t in [0, 1000].

WAN_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=4,
    out_channels=4,
    text_dim=16,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
WAN_I2V_CONFIG = {
    **WAN_CONFIG,
    # Noisy latents (4) + conditioning (4-channel frame mask + 4 image latent channels), CLIP image tokens
    # through the cross-attention's added K/V projections.
    "in_channels": 12,
    "image_dim": 16,
    "added_kv_proj_dim": 24,
}


def wan_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 4, 3, 4, 4),
        encoder_hidden_states=randn(generator, BATCH, 12, 16),
        return_dict=False,
    )


def wan_i2v_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 12, 3, 4, 4),  # torch.cat([latents, condition], dim=1)
        encoder_hidden_states=randn(generator, BATCH, 12, 16),
        encoder_hidden_states_image=randn(generator, BATCH, 4, 16),
        return_dict=False,
    )


def wan_ti2v_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """Wan 2.2 TI2V (``expand_timesteps``): ``(first_frame_mask[0][0][:, ::2, ::2] * t).flatten()`` expanded
    to [B, F*H/2*W/2]; the first latent frame (the image) is 0, every other token t."""
    batch, _, frames, height, width = inputs["hidden_states"].shape
    mask = torch.ones(frames, height // 2, width // 2)
    mask[0] = 0.0
    return (mask * float(t)).flatten().unsqueeze(0).expand(batch, -1)


SKYREELS_DF_FRAMES, SKYREELS_CAUSAL_BLOCK = 4, 2

SKYREELS_DF_CONFIG = {
    **WAN_CONFIG,
    "inject_sample_info": True,  # the DF checkpoints embed the fps
    "num_frame_per_block": SKYREELS_CAUSAL_BLOCK,  # as _set_ar_attention(causal_block_size) leaves it
}


def skyreels_df_inputs(generator: torch.Generator) -> dict[str, Any]:
    # Batch 1, as the pipeline runs it (cond and uncond in separate calls): with diffusion forcing, the fps
    # term is repeated along the batch axis by the frame count, which only lines up for one sample.
    return dict(
        hidden_states=randn(generator, 1, 4, SKYREELS_DF_FRAMES, 4, 4),
        encoder_hidden_states=randn(generator, 1, 12, 16),
        enable_diffusion_forcing=True,
        fps=[1],  # the pipeline's fps_embeds: 0 for 16 fps, 1 otherwise
        return_dict=False,
    )


def skyreels_df_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """Asynchronous diffusion forcing: one row of ``generate_timestep_matrix``, int64 [B, F]. Each causal
    block of frames lags the one before by ``ar_step`` steps (here 250 in t); blocks not started yet sit at
    999, the cap of the pipeline's step template."""
    batch, _, frames = inputs["hidden_states"].shape[:3]
    block = torch.arange(frames) // SKYREELS_CAUSAL_BLOCK
    per_frame = (float(t) + 250.0 * block).clamp(max=999.0).long()
    return per_frame.unsqueeze(0).expand(batch, -1)


# ----------------------------------------------------------------------------------------------------------
# Wan VACE and Wan-Animate.

WAN_VACE_CONFIG = {
    **WAN_CONFIG,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "num_layers": 4,
    "vace_layers": [0, 2],
    "vace_in_channels": 48,
}


def wan_vace_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 16, 3, 4, 4),
        encoder_hidden_states=randn(generator, BATCH, 12, 32),
        control_hidden_states=randn(generator, BATCH, 48, 3, 4, 4),
        control_hidden_states_scale=torch.tensor([1.0, 1.0]),  # conditioning_scale per VACE layer
        return_dict=False,
    )


WAN_ANIMATE_FRAMES = 2  # latent frames of a segment; the input adds the reference image's frame

WAN_ANIMATE_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=12,
    latent_channels=4,
    out_channels=4,
    text_dim=16,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    image_dim=16,
    rope_max_seq_len=32,
    motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16},
    motion_encoder_size=16,
    motion_style_dim=8,
    motion_dim=4,
    motion_encoder_dim=16,
    face_encoder_hidden_dim=16,
    face_encoder_num_heads=2,
    inject_face_latents_blocks=2,
)


def wan_animate_inputs(generator: torch.Generator) -> dict[str, Any]:
    # 4 * (latent frames - 1) + 1 face video frames: the face encoder's two stride-2 convs bring them back
    # to one motion vector per latent frame.
    face_frames = 4 * (WAN_ANIMATE_FRAMES - 1) + 1
    return dict(
        hidden_states=randn(generator, BATCH, 12, WAN_ANIMATE_FRAMES + 1, 4, 4),  # [latents, reference]
        encoder_hidden_states=randn(generator, BATCH, 12, 16),
        encoder_hidden_states_image=randn(generator, BATCH, 4, 16),
        pose_hidden_states=randn(generator, BATCH, 4, WAN_ANIMATE_FRAMES, 4, 4),
        face_pixel_values=randn(generator, BATCH, 3, face_frames, 16, 16).clamp(-1, 1),
        return_dict=False,
    )


# Wan-Animate-2: per-sample lists, batch 1; the generation pass attends to the reference K/V cached by a
# reference pass, through a flex-attention block mask (compiled once per process on first use).
ANIMATE2_LATENT, ANIMATE2_CONDITION, ANIMATE2_FRAMES, ANIMATE2_SIZE = 4, 8, 2, 4
ANIMATE2_SEGMENT_FRAMES, ANIMATE2_AREA = 5, [32, 32]  # pixel geometry giving the latent sizes above

WAN_ANIMATE2_CONFIG = dict(
    patch_size=(1, 2, 2),
    text_len=8,
    in_dim=ANIMATE2_LATENT + ANIMATE2_CONDITION,
    dim=32,
    ffn_dim=64,
    freq_dim=32,
    text_dim=16,
    out_dim=ANIMATE2_LATENT,
    num_heads=2,
    num_layers=2,
)


def wan_animate2_inputs(generator: torch.Generator) -> dict[str, Any]:
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    config = WAN_ANIMATE2_CONFIG
    heads, head_dim = config["num_heads"], config["dim"] // config["num_heads"]
    tokens_per_frame = (ANIMATE2_SIZE // 2) ** 2
    reference_tokens = ANIMATE2_FRAMES * tokens_per_frame
    kv_cache = WanAnimate2KVCache(config["num_layers"])
    for layer in kv_cache.layer_caches:
        # What the reference (extract) pass stores: pre-RoPE K/V of the driving-video tokens.
        shape = (1, reference_tokens, heads, head_dim)
        layer.store(randn(generator, *shape), randn(generator, *shape))
    generation_frames = ANIMATE2_FRAMES + 1  # plus the reference image's slot
    return dict(
        hidden_states=[randn(generator, ANIMATE2_LATENT, generation_frames, ANIMATE2_SIZE, ANIMATE2_SIZE)],
        encoder_hidden_states=[randn(generator, 6, config["text_dim"])],
        condition_latents=[randn(generator, ANIMATE2_CONDITION, generation_frames, ANIMATE2_SIZE, ANIMATE2_SIZE)],
        encoder_hidden_states_image=randn(generator, 1, 4, 1280),  # CLIP ViT-H hidden size, fixed by the model
        kv_cache=kv_cache,
        kv_cache_mode="cached",
        seq_len=generation_frames * tokens_per_frame,
        reference_grid_sizes=torch.tensor([[ANIMATE2_FRAMES, ANIMATE2_SIZE // 2, ANIMATE2_SIZE // 2]]),
        origin_len=ANIMATE2_SEGMENT_FRAMES,
        origin_area=ANIMATE2_AREA,
        is_uncondtion=False,
        return_dict=False,
    )


def wan_animate2_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    return torch.tensor([float(t)])  # torch.stack([t]): one sample per call


def wan_animate2_update(latent: list[torch.Tensor], prediction: torch.Tensor) -> list[torch.Tensor]:
    return [latent[0] - 0.1 * prediction]


# ----------------------------------------------------------------------------------------------------------
# Audio.

ACE_STEP_CONFIG = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    in_channels=24,
    audio_acoustic_hidden_dim=8,
    patch_size=2,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    sliding_window=16,
)


def ace_step_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 8, 8),
        timestep_r=torch.zeros(BATCH),  # filled with t: standard (non mean-flow) inference uses r = t
        encoder_hidden_states=randn(generator, BATCH, 10, 32),
        context_latents=randn(generator, BATCH, 8, 16),  # source latents + chunk masks
        return_dict=False,
    )


def ace_step_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    inputs["timestep_r"].fill_(float(t))
    return default_timestep(t, inputs)


LONGCAT_CONFIG = dict(dit_dim=64, dit_depth=2, dit_heads=4, dit_text_dim=32, latent_dim=8)


def longcat_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 16, 8),
        encoder_hidden_states=randn(generator, BATCH, 10, 32),
        encoder_attention_mask=text_mask(BATCH, 10),
        attention_mask=torch.ones(BATCH, 16, dtype=torch.bool),  # every sample the full duration
        latent_cond=torch.zeros(BATCH, 16, 8),  # text-to-audio: the pipeline passes zeros
        return_dict=False,
    )


MINIMAX_CONFIG = dict(
    in_channels=8,
    condition_dim=16,
    num_layers=2,
    num_attention_heads=2,
    attention_head_dim=8,
    ff_inner_dim=32,
    rotary_dim=4,
    fourier_embedding_dim=8,
)


def minimax_inputs(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        hidden_states=randn(generator, BATCH, 8, 24),
        encoder_hidden_states=randn(generator, BATCH, 24, 16),  # frame-aligned LM states
        return_dict=False,
    )


STABLE_AUDIO3_CONFIG = dict(
    io_channels=8,
    patch_size=1,
    embed_dim=32,
    depth=2,
    num_heads=4,
    cond_token_dim=16,
    global_cond_dim=16,  # equal to cond_token_dim: the duration embedding is also appended as a context token
    local_add_cond_dim=5,
    timestep_features_dim=16,
    ff_mult=2,
    num_memory_tokens=3,
    use_differential_attention=True,  # as the released SA3 Medium
)


def stable_audio3_inputs(generator: torch.Generator) -> dict[str, Any]:
    prompt = randn(generator, BATCH, 4, 16)
    duration = randn(generator, BATCH, 16)
    # prepare_cross_attention: the duration embedding appended after the text tokens, its mask entry valid.
    return dict(
        hidden_states=randn(generator, BATCH, 8, 16),
        encoder_hidden_states=torch.cat([prompt, duration.unsqueeze(1)], dim=1),
        global_hidden_states=duration,
        encoder_attention_mask=torch.cat([text_mask(BATCH, 4, padding=1), torch.ones(BATCH, 1, dtype=torch.bool)], 1),
        return_dict=False,
    )


STABLE_AUDIO_FRAMES, STABLE_AUDIO_HEAD_DIM = 32, 8

STABLE_AUDIO_CONFIG = dict(
    sample_size=STABLE_AUDIO_FRAMES,
    in_channels=4,
    out_channels=4,
    num_layers=2,
    attention_head_dim=STABLE_AUDIO_HEAD_DIM,
    num_attention_heads=4,
    num_key_value_attention_heads=2,
    cross_attention_dim=16,
    time_proj_dim=16,
    global_states_input_dim=32,
    cross_attention_input_dim=16,
)


def stable_audio_inputs(generator: torch.Generator) -> dict[str, Any]:
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    return dict(
        hidden_states=randn(generator, BATCH, 4, STABLE_AUDIO_FRAMES),
        encoder_hidden_states=randn(generator, BATCH, 3, 16),  # text + seconds start/end tokens
        global_hidden_states=randn(generator, BATCH, 1, 32),
        # StableAudioPipeline: RoPE over half the head dim, frames + 1 positions (the prepended global token).
        rotary_embedding=get_1d_rotary_pos_embed(
            STABLE_AUDIO_HEAD_DIM // 2, STABLE_AUDIO_FRAMES + 1, use_real=True, repeat_interleave_real=False
        ),
        return_dict=False,
    )


def stable_audio_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    return torch.tensor([float(t)])  # ``t.unsqueeze(0)``: shape [1] for the whole (CFG-doubled) batch


# ----------------------------------------------------------------------------------------------------------

CASES: list[ZooCase] = [
    ZooCase("LTXVideoTransformer3DModel", "LTX-Video", "video", LTX_CONFIG, ltx_inputs),
    ZooCase(
        "LTXVideoTransformer3DModel",
        "LTX-Video",
        "video",
        LTX_CONFIG,
        ltx_inputs,
        variant="i2v",
        make_timestep=ltx_i2v_timestep,
        update=ltx_keep_conditioning_tokens,
    ),
    ZooCase(
        "LTX2VideoTransformer3DModel",
        "LTX-2",
        "video",
        LTX2_CONFIG,
        ltx2_inputs,
        make_timestep=ltx2_timestep,
    ),
    ZooCase(
        "LTX2VideoTransformer3DModel",
        "LTX-2",
        "video",
        LTX23_CONFIG,
        ltx23_inputs,
        variant="2.3",
        make_timestep=ltx2_timestep,
    ),
    ZooCase(
        "LTX2VideoTransformer3DModel",
        "LTX-2",
        "video",
        LTX2_CONFIG,
        ltx2_i2v_inputs,
        variant="i2v",
        make_timestep=ltx2_i2v_timestep,
        update=ltx_keep_conditioning_tokens,
    ),
    ZooCase(
        "LatteTransformer3DModel",
        "Latte",
        "video",
        LATTE_CONFIG,
        latte_inputs,
        make_timestep=integer_timestep,
    ),
    ZooCase(
        "MochiTransformer3DModel",
        "Mochi 1",
        "video",
        MOCHI_CONFIG,
        mochi_inputs,
        make_timestep=mochi_timestep,
    ),
    ZooCase("SanaVideoTransformer3DModel", "Sana-Video", "video", SANA_VIDEO_CONFIG, sana_video_inputs),
    ZooCase(
        "SanaVideoTransformer3DModel",
        "Sana-Video",
        "video",
        SANA_VIDEO_CONFIG,
        sana_video_inputs,
        variant="i2v",
        make_timestep=sana_video_i2v_timestep,
        update=keep_first_frame,
    ),
    ZooCase(
        "SanaWMTransformer3DModel",
        "SANA-WM",
        "video",
        SANA_WM_CONFIG,
        sana_wm_inputs,
        make_timestep=sana_wm_timestep,
        update=keep_first_frame,
    ),
    ZooCase(
        "SanaWMLTX2RefinerTransformer3DModel",
        "SANA-WM refiner",
        "video",
        REFINER_CONFIG,
        refiner_inputs,
        make_timestep=per_token_timestep,
    ),
    ZooCase("SkyReelsV2Transformer3DModel", "SkyReels-V2", "video", WAN_CONFIG, wan_inputs),
    ZooCase(
        "SkyReelsV2Transformer3DModel",
        "SkyReels-V2",
        "video",
        SKYREELS_DF_CONFIG,
        skyreels_df_inputs,
        variant="diffusion-forcing",
        make_timestep=skyreels_df_timestep,
    ),
    ZooCase("WanTransformer3DModel", "Wan 2.1 / 2.2", "video", WAN_CONFIG, wan_inputs),
    ZooCase(
        "WanTransformer3DModel",
        "Wan 2.1 / 2.2",
        "video",
        WAN_I2V_CONFIG,
        wan_i2v_inputs,
        variant="i2v",
        update=update_leading_channels,
    ),
    ZooCase(
        "WanTransformer3DModel",
        "Wan 2.1 / 2.2",
        "video",
        WAN_CONFIG,
        wan_inputs,
        variant="ti2v",
        make_timestep=wan_ti2v_timestep,
        update=keep_first_frame,
    ),
    ZooCase(
        "WanAnimateTransformer3DModel",
        "Wan 2.2 Animate",
        "video",
        WAN_ANIMATE_CONFIG,
        wan_animate_inputs,
        update=update_leading_channels,
    ),
    ZooCase(
        "WanAnimate2Transformer3DModel",
        "Wan-Animate 2",
        "video",
        WAN_ANIMATE2_CONFIG,
        wan_animate2_inputs,
        make_timestep=wan_animate2_timestep,
        update=wan_animate2_update,
    ),
    ZooCase("WanVACETransformer3DModel", "Wan VACE", "video", WAN_VACE_CONFIG, wan_vace_inputs),
    ZooCase(
        "TransformerTemporalModel",
        "UNet3D temporal layer",
        "video",
        reason="a temporal attention layer inside UNet3DConditionModel and I2VGen-XL, not a denoiser: the UNet "
        "calls it without a timestep and its blocks ignore one.",
    ),
    ZooCase(
        "AceStepTransformer1DModel",
        "ACE-Step 1.5",
        "audio",
        ACE_STEP_CONFIG,
        ace_step_inputs,
        timestep_range=1.0,
        make_timestep=ace_step_timestep,
    ),
    ZooCase(
        "LongCatAudioDiTTransformer",
        "LongCat-Audio-DiT",
        "audio",
        LONGCAT_CONFIG,
        longcat_inputs,
        timestep_range=1.0,
        make_timestep=reversed_timestep,
    ),
    ZooCase(
        "MiniMaxMusic3Transformer1DModel",
        "MiniMax Music 3",
        "audio",
        MINIMAX_CONFIG,
        minimax_inputs,
        timestep_range=1.0,
        make_timestep=reversed_timestep,
    ),
    ZooCase(
        "StableAudio3DiTModel",
        "Stable Audio 3",
        "audio",
        STABLE_AUDIO3_CONFIG,
        stable_audio3_inputs,
        timestep_range=1.0,
    ),
    ZooCase(
        "StableAudioDiTModel",
        "Stable Audio Open",
        "audio",
        STABLE_AUDIO_CONFIG,
        stable_audio_inputs,
        timestep_range=1.0,
        make_timestep=stable_audio_timestep,
    ),
]
