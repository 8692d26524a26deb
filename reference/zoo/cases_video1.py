"""Zoo cases, video part 1: Allegro, AnyFlow, ChronoEdit, CogVideoX, ConsisID, Cosmos, EasyAnimate,
Helios, HunyuanVideo (1.0, 1.5, FramePack), JoyImage Edit, Kandinsky 5 / 6, MiniMax-H3 and Motif-Video.

Each case builds one evaluation as the class's diffusers pipeline makes it: the same arguments, the
timestep in the pipeline's range and shape, conditioning channels and frames where the pipeline
concatenates them. Where the latent argument carries more than the noisy latent (conditioning
channels, reference frames, reference patches), ``update`` changes only the noisy part, as the
pipeline's scheduler step does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from smoothcache.reference.zoo import Update, ZooCase

BATCH = 2


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Standard normal noise of ``shape`` drawn from ``generator``."""
    return torch.randn(shape, generator=generator)


def _text_mask(batch: int, length: int, valid: tuple[int, ...] | None = None) -> torch.Tensor:
    """A prompt padding mask: ``valid[i]`` leading ones for item ``i`` (default: the last one padded)."""
    valid = valid or tuple(length if i < batch - 1 else length - 2 for i in range(batch))
    return (torch.arange(length)[None, :] < torch.tensor(valid)[:, None]).to(torch.float32)


def _update_slice(dim: int, stop: int, start: int = 0, prediction_start: int = 0) -> Update:
    """Step only ``latent[start:stop]`` along ``dim`` with the matching slice of the prediction
    (``prediction_start`` onwards); the rest of the latent (conditioning) is kept."""

    def update(latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        length = stop - start
        latent = latent.clone()
        latent.narrow(dim, start, length).sub_(0.1 * prediction.narrow(dim, prediction_start, length))
        return latent

    return update


# --- Allegro --------------------------------------------------------------------------------------


def _allegro_inputs(generator: torch.Generator) -> dict[str, Any]:
    from diffusers.models.embeddings import get_3d_rotary_pos_embed_allegro

    frames, side, patch, text = 2, 8, 2, 16
    grid = side // patch
    # The pipeline's `_prepare_rotary_positional_embeddings`: per-axis frequencies and the token grid.
    freqs_t, freqs_h, freqs_w, grid_t, grid_h, grid_w = get_3d_rotary_pos_embed_allegro(
        embed_dim=12,
        crops_coords=((0, 0), (grid, grid)),
        grid_size=(grid, grid),
        temporal_size=frames,
        interpolation_scale=(2.2, 2.0, 2.0),
    )
    positions = torch.cartesian_prod(grid_t.long(), grid_h.long(), grid_w.long())
    positions = positions.reshape(-1, 3).transpose(0, 1).reshape(3, 1, -1).contiguous()
    return {
        "hidden_states": _randn(generator, BATCH, 4, frames, side, side),
        "encoder_hidden_states": _randn(generator, BATCH, text, 8),
        "encoder_attention_mask": _text_mask(BATCH, text),
        "image_rotary_emb": ((freqs_t, freqs_h, freqs_w), tuple(positions)),
        "return_dict": False,
    }


ALLEGRO = ZooCase(
    cls="AllegroTransformer3DModel",
    family="Allegro",
    modality="video",
    config=dict(
        num_attention_heads=2,
        attention_head_dim=12,  # the 3D rotary embedding splits a head into three even parts
        in_channels=4,
        out_channels=4,
        num_layers=2,
        cross_attention_dim=24,  # the captions are projected to the inner width
        sample_width=8,
        sample_height=8,
        sample_frames=8,
        caption_channels=8,
    ),
    inputs=_allegro_inputs,
)


# --- AnyFlow (Wan 2.1 backbone with a flow-map timestep pair) -------------------------------------

_ANYFLOW_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=4,
    out_channels=4,
    text_dim=16,
    freq_dim=32,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    rope_max_seq_len=32,
    gate_value=0.25,
    deltatime_type="r",
)


def _anyflow_inputs(generator: torch.Generator) -> dict[str, Any]:
    frames = 2
    return {
        # (B, F, C, H, W): AnyFlow keeps frames before channels.
        "hidden_states": _randn(generator, BATCH, frames, 4, 8, 8),
        "r_timestep": torch.zeros(BATCH, frames),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 16),
        "return_dict": False,
    }


def _anyflow_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """Per-frame source timestep ``[B, F]``. The target ``r_timestep`` gets the same values, as the
    pipeline passes with ``use_mean_velocity=False``; it is filled in place because a case has one
    timestep argument (the default mean-velocity mode uses the next step's timestep as ``r``)."""
    inputs["r_timestep"].fill_(float(t))
    return inputs["r_timestep"].clone()


ANYFLOW = ZooCase(
    cls="AnyFlowTransformer3DModel",
    family="AnyFlow",
    modality="video",
    config=_ANYFLOW_CONFIG,
    inputs=_anyflow_inputs,
    make_timestep=_anyflow_timestep,
)


# --- AnyFlow FAR (chunk-wise autoregressive, KV cache of earlier chunks) --------------------------

_FAR_CHUNKS = [2, 2]  # two chunks of two latent frames; the case denoises the second one
_FAR_CONFIG = dict(_ANYFLOW_CONFIG, compressed_patch_size=(1, 4, 4), full_chunk_limit=3)


def _far_inputs(generator: torch.Generator) -> dict[str, Any]:
    heads, head_dim, side = 2, 12, 8
    full_tokens = (side // 2) ** 2
    compressed_tokens = (side // 4) ** 2
    limit, longest = _FAR_CONFIG["full_chunk_limit"], max(_FAR_CHUNKS)
    cached_full = _FAR_CHUNKS[0] * full_tokens
    kv_cache = {}
    for layer in range(_FAR_CONFIG["num_layers"]):
        # Allocated as the pipeline does; the first chunk's keys/values stand in for its cache step.
        full = torch.zeros(2, BATCH, heads, limit * longest * full_tokens, head_dim)
        full[:, :, :, :cached_full] = _randn(generator, 2, BATCH, heads, cached_full, head_dim)
        compressed_len = (len(_FAR_CHUNKS) - limit + 1) * longest * compressed_tokens
        compressed = torch.zeros(2, BATCH, heads, max(compressed_len, 0), head_dim)
        kv_cache[layer] = {"full_cache": full, "compressed_cache": compressed}
    frames = _FAR_CHUNKS[-1]
    return {
        "hidden_states": _randn(generator, BATCH, frames, 4, side, side),
        "r_timestep": torch.zeros(BATCH, frames),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 16),
        "chunk_partition": list(_FAR_CHUNKS),
        "kv_cache": kv_cache,
        "kv_cache_flag": {"num_cached_chunks": len(_FAR_CHUNKS) - 1, "is_cache_step": False},
        "return_dict": False,
    }


ANYFLOW_FAR = ZooCase(
    cls="AnyFlowFARTransformer3DModel",
    family="AnyFlow",
    modality="video",
    config=_FAR_CONFIG,
    inputs=_far_inputs,
    make_timestep=_anyflow_timestep,
)


# --- ChronoEdit (Wan 2.1 image-to-video backbone) -------------------------------------------------

_CHRONO_LATENT = 4  # noisy latent channels; then 4 first-frame mask channels and 4 condition channels


def _chronoedit_inputs(generator: torch.Generator) -> dict[str, Any]:
    frames, side = 2, 8  # the default 5 video frames: two latent frames, input and edited image
    latents = _randn(generator, BATCH, _CHRONO_LATENT, frames, side, side)
    mask = torch.zeros(BATCH, 4, frames, side, side)
    mask[:, :, 0] = 1.0
    condition = _randn(generator, BATCH, _CHRONO_LATENT, frames, side, side)
    return {
        "hidden_states": torch.cat([latents, mask, condition], dim=1),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 32),
        "encoder_hidden_states_image": _randn(generator, BATCH, 5, 16),
        "return_dict": False,
    }


CHRONOEDIT = ZooCase(
    cls="ChronoEditTransformer3DModel",
    family="ChronoEdit",
    modality="video",
    config=dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=3 * _CHRONO_LATENT,
        out_channels=_CHRONO_LATENT,
        text_dim=32,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        image_dim=16,
        added_kv_proj_dim=16,
        rope_max_seq_len=64,
        rope_temporal_skip_len=8,
    ),
    inputs=_chronoedit_inputs,
    update=_update_slice(dim=1, stop=_CHRONO_LATENT),
)


# --- CogVideoX ------------------------------------------------------------------------------------

_COGVIDEOX_CONFIG = dict(
    num_attention_heads=2,
    attention_head_dim=16,  # the 3D rotary embedding gives a quarter of a head to time, 3/8 to each side
    in_channels=4,
    out_channels=4,
    time_embed_dim=2,
    text_embed_dim=8,
    num_layers=2,
    sample_width=8,
    sample_height=8,
    sample_frames=8,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=8,
    use_rotary_positional_embeddings=True,
)


def _cogvideox_rotary(frames: int, patch_t: int | None, side: int = 8, patch: int = 2):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    grid = side // patch
    if patch_t is None:  # CogVideoX 1.0: the grid equals the base size, so the crop is the whole grid
        return get_3d_rotary_pos_embed(16, ((0, 0), (grid, grid)), (grid, grid), frames)
    latent_frames = (frames + patch_t - 1) // patch_t
    return get_3d_rotary_pos_embed(16, None, (grid, grid), latent_frames, grid_type="slice", max_size=(grid, grid))


def _cogvideox_inputs(patch_t: int | None) -> Callable[[torch.Generator], dict[str, Any]]:
    def inputs(generator: torch.Generator) -> dict[str, Any]:
        frames = 2
        return {
            # (B, F, C, H, W)
            "hidden_states": _randn(generator, BATCH, frames, 4, 8, 8),
            "encoder_hidden_states": _randn(generator, BATCH, 8, 8),
            "image_rotary_emb": _cogvideox_rotary(frames, patch_t),
            "return_dict": False,
        }

    return inputs


COGVIDEOX = ZooCase(
    cls="CogVideoXTransformer3DModel",
    family="CogVideoX",
    modality="video",
    config=dict(_COGVIDEOX_CONFIG, patch_size_t=None),
    inputs=_cogvideox_inputs(None),
)

COGVIDEOX_15 = ZooCase(
    cls="CogVideoXTransformer3DModel",
    variant="1.5",
    family="CogVideoX 1.5",
    modality="video",
    config=dict(_COGVIDEOX_CONFIG, patch_size_t=2),
    inputs=_cogvideox_inputs(2),
)


# --- ConsisID (CogVideoX with identity conditioning) ----------------------------------------------

_CONSISID_LATENT = 4


def _consisid_inputs(generator: torch.Generator) -> dict[str, Any]:
    frames = 2
    latents = _randn(generator, BATCH, frames, _CONSISID_LATENT, 8, 8)
    # The reference image latent fills the first frame; later frames are zero, as the pipeline pads it.
    image_latents = torch.zeros(BATCH, frames, _CONSISID_LATENT, 8, 8)
    image_latents[:, 0] = _randn(generator, BATCH, _CONSISID_LATENT, 8, 8)
    return {
        "hidden_states": torch.cat([latents, image_latents], dim=2),
        "encoder_hidden_states": _randn(generator, BATCH, 8, 8),
        "image_rotary_emb": _cogvideox_rotary(frames, None),
        "id_vit_hidden": [_randn(generator, BATCH, 3, 4) for _ in range(2)],
        "id_cond": _randn(generator, BATCH, 6),
        "return_dict": False,
    }


CONSISID = ZooCase(
    cls="ConsisIDTransformer3DModel",
    family="ConsisID",
    modality="video",
    config=dict(
        # The face cross-attention reads the facial features at 2/3 of the inner width (2048 for 3072).
        num_attention_heads=3,
        attention_head_dim=16,
        in_channels=2 * _CONSISID_LATENT,
        out_channels=_CONSISID_LATENT,
        time_embed_dim=2,
        text_embed_dim=8,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=8,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=8,
        use_rotary_positional_embeddings=True,
        is_train_face=True,
        is_kps=False,
        cross_attn_interval=2,  # one face cross-attention after every other block
        cross_attn_dim_head=4,
        cross_attn_num_heads=2,
        LFE_id_dim=6,
        LFE_vit_dim=4,
        LFE_depth=2,
        LFE_dim_head=4,
        LFE_num_heads=2,
        LFE_num_id_token=2,
        LFE_num_querie=2,
        LFE_output_dim=32,
        LFE_ff_mult=1,
        LFE_num_scale=2,
    ),
    inputs=_consisid_inputs,
    # (B, F, C, H, W): the prediction steps the noisy channels; the image-latent channels are kept.
    update=_update_slice(dim=2, stop=_CONSISID_LATENT),
)


# --- Cosmos ---------------------------------------------------------------------------------------

_COSMOS_CONFIG = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=12,
    num_layers=2,
    mlp_ratio=2,
    text_embed_dim=16,
    adaln_lora_dim=4,
    max_size=(4, 32, 32),
    patch_size=(1, 2, 2),
    rope_scale=(2.0, 1.0, 1.0),
    # Released checkpoints concatenate an all-zero padding-mask channel, resized with torchvision, which
    # is not a dependency here; without it the model has one input channel less and the same blocks.
    concat_padding_mask=False,
    extra_pos_embed_type="learnable",
)
_COSMOS_FRAMES = 3
_COSMOS_COND_FRAMES = 1  # Predict 2.5 video-to-world: the first latent frame is the conditioning frame


def _cosmos_text2world_inputs(generator: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(generator, BATCH, 4, _COSMOS_FRAMES, 8, 8),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 16),
        "fps": 30,
        "return_dict": False,
    }


def _cosmos_video2world_inputs(generator: torch.Generator) -> dict[str, Any]:
    condition_mask = torch.zeros(BATCH, 1, _COSMOS_FRAMES, 8, 8)
    condition_mask[:, :, :_COSMOS_COND_FRAMES] = 1.0
    return {
        "hidden_states": _randn(generator, BATCH, 4, _COSMOS_FRAMES, 8, 8),
        "condition_mask": condition_mask,
        # Predict 2.5 projects the concatenated text-encoder layers down to the cross-attention width.
        "encoder_hidden_states": _randn(generator, BATCH, 12, 32),
        "return_dict": False,
    }


def _cosmos_frame_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """``[B, 1, T, 1, 1]``: the sigma in [0, 1] for generated frames, 1e-4 for conditioning frames."""
    latent = inputs["hidden_states"]
    timestep = torch.full((latent.shape[0], 1, latent.shape[2], 1, 1), float(t))
    timestep[:, :, :_COSMOS_COND_FRAMES] = 1e-4
    return timestep


COSMOS = ZooCase(
    cls="CosmosTransformer3DModel",
    family="Cosmos Predict 2.5",
    modality="video",
    config=dict(
        _COSMOS_CONFIG,
        in_channels=4 + 1,  # the condition mask is concatenated to the latent
        use_crossattn_projection=True,
        crossattn_proj_in_channels=32,
        encoder_hidden_states_channels=16,
    ),
    inputs=_cosmos_video2world_inputs,
    timestep_range=1.0,
    make_timestep=_cosmos_frame_timestep,
    # The pipeline replaces the conditioning frames' velocity by the ground truth: they stay fixed.
    update=_update_slice(dim=2, start=_COSMOS_COND_FRAMES, stop=_COSMOS_FRAMES, prediction_start=_COSMOS_COND_FRAMES),
)

COSMOS_TEXT2WORLD = ZooCase(
    cls="CosmosTransformer3DModel",
    variant="text2world",
    family="Cosmos 1.0",
    modality="video",
    config=_COSMOS_CONFIG,
    inputs=_cosmos_text2world_inputs,
    # EDM preconditioned noise level 0.25 * log(sigma), at sigma_max = 80.
    timestep_range=0.25 * math.log(80.0),
)


# --- EasyAnimate ----------------------------------------------------------------------------------


def _easyanimate_inputs(generator: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(generator, BATCH, 4, 2, 8, 8),
        "encoder_hidden_states": _randn(generator, BATCH, 16, 16),
        "return_dict": False,
    }


EASYANIMATE = ZooCase(
    cls="EasyAnimateTransformer3DModel",
    family="EasyAnimate",
    modality="video",
    config=dict(
        attention_head_dim=16,
        num_attention_heads=2,
        in_channels=4,
        mmdit_layers=2,
        num_layers=2,
        out_channels=4,
        patch_size=2,
        sample_height=60,
        sample_width=90,
        text_embed_dim=16,
        time_embed_dim=8,
        time_position_encoding_type="3d_rope",
        timestep_activation_fn="silu",
    ),
    inputs=_easyanimate_inputs,
)


# --- Helios (chunked long video with multi-scale history) -----------------------------------------


def _helios_inputs(generator: torch.Generator) -> dict[str, Any]:
    # The pipeline's default layout with `keep_first_frame`, scaled down: history sizes [long, mid, 1x]
    # = [4, 2, 1], short history = the first frame plus the 1x history, then the chunk being denoised.
    long, mid, short, chunk, side = 4, 2, 2, 2, 8
    indices = torch.arange(1 + long + mid + 1 + chunk)
    prefix, i_long, i_mid, i_1x, i_chunk = indices.split([1, long, mid, 1, chunk])
    return {
        "hidden_states": _randn(generator, BATCH, 4, chunk, side, side),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 16),
        "indices_hidden_states": i_chunk[None],
        "indices_latents_history_short": torch.cat([prefix, i_1x])[None],
        "indices_latents_history_mid": i_mid[None],
        "indices_latents_history_long": i_long[None],
        "latents_history_short": _randn(generator, BATCH, 4, short, side, side),
        "latents_history_mid": _randn(generator, BATCH, 4, mid, side, side),
        "latents_history_long": _randn(generator, BATCH, 4, long, side, side),
        "return_dict": False,
    }


HELIOS = ZooCase(
    cls="HeliosTransformer3DModel",
    family="Helios",
    modality="video",
    config=dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_dim=(4, 4, 4),
        has_multi_term_memory_patch=True,
        guidance_cross_attn=True,
        zero_history_timestep=True,
        is_amplify_history=False,
    ),
    inputs=_helios_inputs,
)


# --- HunyuanVideo ---------------------------------------------------------------------------------

_HUNYUAN_CONFIG = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=10,
    num_layers=2,
    num_single_layers=2,
    num_refiner_layers=1,
    patch_size=1,
    patch_size_t=1,
    guidance_embeds=True,
    text_embed_dim=16,
    pooled_projection_dim=8,
    rope_axes_dim=(2, 4, 4),
)


def _hunyuan_inputs(generator: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(generator, BATCH, 4, 2, 8, 8),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 16),
        "encoder_attention_mask": _text_mask(BATCH, 12),
        "pooled_projections": _randn(generator, BATCH, 8),
        "guidance": torch.full((BATCH,), 6.0 * 1000.0),  # guidance-distilled: scale * 1000
        "return_dict": False,
    }


def _keep_first_frame(latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """Token-replace image-to-video: frame 0 is the image latent, put back before every evaluation."""
    return torch.cat([latent[:, :, :1], latent[:, :, 1:] - 0.1 * prediction[:, :, 1:]], dim=2)


HUNYUAN_VIDEO = ZooCase(
    cls="HunyuanVideoTransformer3DModel",
    family="HunyuanVideo",
    modality="video",
    config=dict(_HUNYUAN_CONFIG, image_condition_type=None),
    inputs=_hunyuan_inputs,
)

HUNYUAN_VIDEO_I2V = ZooCase(
    cls="HunyuanVideoTransformer3DModel",
    variant="i2v-token-replace",
    family="HunyuanVideo I2V",
    modality="video",
    config=dict(_HUNYUAN_CONFIG, image_condition_type="token_replace"),
    inputs=_hunyuan_inputs,
    update=_keep_first_frame,
)


# --- HunyuanVideo 1.5 -----------------------------------------------------------------------------

_HY15_LATENT = 4


def _hunyuan15_inputs(image: bool) -> Callable[[torch.Generator], dict[str, Any]]:
    def inputs(generator: torch.Generator) -> dict[str, Any]:
        frames, side = 2, 8
        latents = _randn(generator, BATCH, _HY15_LATENT, frames, side, side)
        condition = torch.zeros(BATCH, _HY15_LATENT, frames, side, side)
        mask = torch.zeros(BATCH, 1, frames, side, side)
        image_embeds = torch.zeros(BATCH, 3, 12)  # all-zero image embeddings mark text-to-video
        if image:
            condition[:, :, 0] = _randn(generator, BATCH, _HY15_LATENT, side, side)
            mask[:, :, 0] = 1.0
            image_embeds = _randn(generator, BATCH, 3, 12)
        return {
            "hidden_states": torch.cat([latents, condition, mask], dim=1),
            "encoder_hidden_states": _randn(generator, BATCH, 6, 16),
            "encoder_attention_mask": _text_mask(BATCH, 6),
            "encoder_hidden_states_2": _randn(generator, BATCH, 4, 8),
            "encoder_attention_mask_2": _text_mask(BATCH, 4, (4, 1)),
            "image_embeds": image_embeds,
            "return_dict": False,
        }

    return inputs


_HY15_CONFIG = dict(
    in_channels=2 * _HY15_LATENT + 1,
    out_channels=_HY15_LATENT,
    num_attention_heads=2,
    attention_head_dim=8,
    num_layers=2,
    num_refiner_layers=1,
    mlp_ratio=2.0,
    patch_size=1,
    patch_size_t=1,
    text_embed_dim=16,
    text_embed_2_dim=8,
    image_embed_dim=12,
    rope_axes_dim=(2, 2, 4),
    target_size=16,
)

HUNYUAN_VIDEO_15 = ZooCase(
    cls="HunyuanVideo15Transformer3DModel",
    family="HunyuanVideo 1.5",
    modality="video",
    config=dict(_HY15_CONFIG, task_type="t2v"),
    inputs=_hunyuan15_inputs(image=False),
    update=_update_slice(dim=1, stop=_HY15_LATENT),
)

HUNYUAN_VIDEO_15_I2V = ZooCase(
    cls="HunyuanVideo15Transformer3DModel",
    variant="i2v",
    family="HunyuanVideo 1.5",
    modality="video",
    config=dict(_HY15_CONFIG, task_type="i2v"),
    inputs=_hunyuan15_inputs(image=True),
    update=_update_slice(dim=1, stop=_HY15_LATENT),
)


# --- HunyuanVideo FramePack -----------------------------------------------------------------------


def _framepack_inputs(generator: torch.Generator) -> dict[str, Any]:
    # The default inverted anti-drifting layout, scaled down: [prefix, padding, window, 1x, 2x, 4x]
    # positions; the clean latents are the first frame and the 1x history.
    window, padding, h1, h2, h4, side = 2, 2, 1, 2, 4, 8
    indices = torch.arange(1 + padding + window + h1 + h2 + h4)
    prefix, _, i_window, i_1x, i_2x, i_4x = indices.split([1, padding, window, h1, h2, h4])
    return {
        "hidden_states": _randn(generator, BATCH, 4, window, side, side),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 16),
        "encoder_attention_mask": _text_mask(BATCH, 12),
        "pooled_projections": _randn(generator, BATCH, 8),
        "image_embeds": _randn(generator, BATCH, 6, 16),
        "indices_latents": i_window,
        "guidance": torch.full((BATCH,), 6.0 * 1000.0),
        "latents_clean": _randn(generator, BATCH, 4, 1 + h1, side, side),
        "indices_latents_clean": torch.cat([prefix, i_1x]),
        "latents_history_2x": _randn(generator, BATCH, 4, h2, side, side),
        "indices_latents_history_2x": i_2x,
        "latents_history_4x": _randn(generator, BATCH, 4, h4, side, side),
        "indices_latents_history_4x": i_4x,
        "return_dict": False,
    }


HUNYUAN_VIDEO_FRAMEPACK = ZooCase(
    cls="HunyuanVideoFramepackTransformer3DModel",
    family="FramePack",
    modality="video",
    config=dict(
        _HUNYUAN_CONFIG,
        num_layers=1,
        num_single_layers=1,
        patch_size=2,
        image_condition_type=None,
        has_image_proj=True,
        image_proj_dim=16,
        has_clean_x_embedder=True,
    ),
    inputs=_framepack_inputs,
)


# --- JoyImage Edit --------------------------------------------------------------------------------

_JOY_CONFIG = dict(
    patch_size=[1, 2, 2],
    in_channels=16,
    hidden_size=32,
    num_attention_heads=2,
    text_dim=16,
    num_layers=2,
    rope_dim_list=[4, 6, 6],
    theta=256,
)


def _joyimage_inputs(generator: torch.Generator) -> dict[str, Any]:
    # (B, items, C, T, H, W): the reference image latent first, the noisy target last.
    return {
        "hidden_states": _randn(generator, BATCH, 2, 16, 1, 4, 4),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 16),
        "return_dict": False,
    }


JOYIMAGE_EDIT = ZooCase(
    cls="JoyImageEditTransformer3DModel",
    family="JoyImage Edit",
    modality="image",
    config=_JOY_CONFIG,
    inputs=_joyimage_inputs,
    # The pipeline restores the reference items before every evaluation.
    update=_update_slice(dim=1, start=1, stop=2, prediction_start=1),
)

_JOY_PLUS_TARGET = 4  # target patches (a 1 x 2 x 2 grid); a reference image of the same size follows


def _joyimage_plus_inputs(generator: torch.Generator) -> dict[str, Any]:
    target, reference = (1, 2, 2), (1, 2, 2)
    return {
        # (B, patches, C, pt, ph, pw): target patches first, then reference patches.
        "hidden_states": _randn(generator, BATCH, 2 * _JOY_PLUS_TARGET, 16, 1, 2, 2),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 16),
        "encoder_hidden_states_mask": _text_mask(BATCH, 12),
        "shape_list": [[target, reference] for _ in range(BATCH)],
        "return_dict": False,
    }


JOYIMAGE_EDIT_PLUS = ZooCase(
    cls="JoyImageEditPlusTransformer3DModel",
    family="JoyImage Edit Plus",
    modality="image",
    config=_JOY_CONFIG,
    inputs=_joyimage_plus_inputs,
    update=_update_slice(dim=1, stop=_JOY_PLUS_TARGET),
)


# --- Kandinsky 5 / 6 (channels-last latents) ------------------------------------------------------

_KANDINSKY_LATENT = 4


def _kandinsky_latent(generator: torch.Generator, frames: int = 2, side: int = 8) -> torch.Tensor:
    """(B, T, H, W, 2C + 1): noisy latent, conditioning latent (zero for text-to-video) and its mask."""
    latents = _randn(generator, BATCH, frames, side, side, _KANDINSKY_LATENT)
    condition = torch.zeros(BATCH, frames, side, side, _KANDINSKY_LATENT + 1)
    return torch.cat([latents, condition], dim=-1)


def _kandinsky5_inputs(generator: torch.Generator) -> dict[str, Any]:
    frames, side, text = 2, 8, 8
    return {
        "hidden_states": _kandinsky_latent(generator, frames, side),
        "encoder_hidden_states": _randn(generator, BATCH, text, 16),
        "pooled_projections": _randn(generator, BATCH, 8),
        "visual_rope_pos": [torch.arange(frames), torch.arange(side // 2), torch.arange(side // 2)],
        "text_rope_pos": torch.arange(text),
        "scale_factor": (1, 2, 2),
        "sparse_params": None,
        "return_dict": False,
    }


_UPDATE_CHANNELS_LAST = _update_slice(dim=-1, stop=_KANDINSKY_LATENT)

KANDINSKY5 = ZooCase(
    cls="Kandinsky5Transformer3DModel",
    family="Kandinsky 5",
    modality="video",
    config=dict(
        in_visual_dim=_KANDINSKY_LATENT,
        in_text_dim=16,
        in_text_dim2=8,
        time_dim=16,
        out_visual_dim=_KANDINSKY_LATENT,
        patch_size=(1, 2, 2),
        model_dim=16,
        ff_dim=32,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(2, 2, 4),
        visual_cond=True,
        attention_type="regular",
    ),
    inputs=_kandinsky5_inputs,
    update=_UPDATE_CHANNELS_LAST,
)


def _kandinsky6_inputs(generator: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _kandinsky_latent(generator),
        "audio_hidden_states": _randn(generator, BATCH, 6, 6),
        "encoder_hidden_states": _randn(generator, BATCH, 8, 16),
        "pooled_projections": _randn(generator, BATCH, 8),
        "encoder_attention_mask": _text_mask(BATCH, 8).bool(),
        "return_dict": False,
    }


KANDINSKY6 = ZooCase(
    cls="Kandinsky6Transformer3DModel",
    family="Kandinsky 6",
    modality="video",
    config=dict(
        in_visual_dim=_KANDINSKY_LATENT,
        out_visual_dim=_KANDINSKY_LATENT,
        in_text_dim=16,
        in_text_dim2=8,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=16,
        ff_dim=32,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(2, 2, 4),
        visual_cond=True,
        in_audio_dim=6,
        out_audio_dim=6,
    ),
    inputs=_kandinsky6_inputs,
    update=_UPDATE_CHANNELS_LAST,
)


def _kandinsky6_sr_inputs(generator: torch.Generator) -> dict[str, Any]:
    # NABLA attention groups 8 x 8 token blocks: the smallest tile is 8 x 8 tokens per frame.
    return {"hidden_states": _kandinsky_latent(generator, frames=2, side=8), "return_dict": False}


KANDINSKY6_SR = ZooCase(
    cls="Kandinsky6SRTransformer3DModel",
    family="Kandinsky 6 SR",
    modality="video",
    config=dict(
        in_visual_dim=_KANDINSKY_LATENT,
        out_visual_dim=10 * _KANDINSKY_LATENT,  # pi-Flow policy parameters, 10x the latent (640 for 64)
        time_dim=16,
        patch_size=(1, 1, 1),
        model_dim=16,
        ff_dim=32,
        num_visual_blocks=2,
        axes_dims=(2, 2, 4),
    ),
    inputs=_kandinsky6_sr_inputs,
    update=_UPDATE_CHANNELS_LAST,
)


# --- MiniMax-H3 (one packed text / audio / video sequence) ----------------------------------------

_H3_TEXT, _H3_AUDIO, _H3_VIDEO_FRAMES, _H3_FRAME_TOKENS = 4, 6, 2, 4
_H3_VIDEO = _H3_VIDEO_FRAMES * _H3_FRAME_TOKENS
_H3_COND_ROWS = _H3_FRAME_TOKENS  # image-to-video: the first video frame's rows are clean conditioning


def _minimax_h3_inputs(generator: torch.Generator) -> dict[str, Any]:
    length = _H3_TEXT + _H3_AUDIO + _H3_VIDEO
    text_indices = torch.arange(_H3_TEXT)
    audio_indices = torch.arange(_H3_TEXT, _H3_TEXT + _H3_AUDIO)
    video_indices = torch.arange(_H3_TEXT + _H3_AUDIO, length)
    token_tags = torch.zeros(length, dtype=torch.long)  # 0 video, 1 text, 2 audio
    token_tags[text_indices], token_tags[audio_indices] = 1, 2
    # Row -> index into `timestep`: 0 the noise level being denoised, 1 the clean conditioning rows.
    timestep_indices = torch.zeros(length, dtype=torch.long)
    timestep_indices[video_indices[:_H3_COND_ROWS]] = 1
    position_ids = torch.zeros(length, 3)
    position_ids[:, 0] = torch.arange(length, dtype=torch.float32)
    video_rows = torch.arange(_H3_VIDEO)
    position_ids[video_indices, 1] = (video_rows % _H3_FRAME_TOKENS // 2).float()
    position_ids[video_indices, 2] = (video_rows % 2).float()
    return {
        "hidden_states": _randn(generator, BATCH, _H3_VIDEO, 16),
        "audio_hidden_states": _randn(generator, BATCH, _H3_AUDIO, 6),
        "encoder_hidden_states": _randn(generator, BATCH, _H3_TEXT, 8),
        "timestep_indices": timestep_indices,
        "token_tags": token_tags,
        "position_ids": position_ids,
        "video_indices": video_indices,
        "audio_indices": audio_indices,
        "text_indices": text_indices,
        "return_dict": False,
    }


def _minimax_h3_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """The distinct noise levels of the packed rows, in [0, 1]: ``[t, 0]``, conditioning rows clean."""
    return torch.tensor([float(t), 0.0])


MINIMAX_H3 = ZooCase(
    cls="MiniMaxH3Transformer3DModel",
    family="MiniMax-H3",
    modality="video",
    config=dict(
        num_attention_heads=2,
        attention_head_dim=16,
        hidden_size=24,
        num_layers=2,
        num_refiner_layers=1,
        ffn_dim=32,
        in_channels=4,
        audio_in_channels=6,
        patch_size=(1, 2, 2),
        text_dim=8,
        freq_dim=8,
        time_embed_hidden_dim=24,
        time_embed_dim=16,
        rope_freq_dim=2,
    ),
    inputs=_minimax_h3_inputs,
    timestep_range=1.0,
    make_timestep=_minimax_h3_timestep,
    update=_update_slice(dim=1, start=_H3_COND_ROWS, stop=_H3_VIDEO, prediction_start=_H3_COND_ROWS),
)


# --- Motif-Video ----------------------------------------------------------------------------------

_MOTIF_LATENT = 4


def _motif_inputs(generator: torch.Generator) -> dict[str, Any]:
    frames, side = 2, 8
    latents = _randn(generator, BATCH, _MOTIF_LATENT, frames, side, side)
    # Text-to-video: the conditioning latent and its mask are zero.
    condition = torch.zeros(BATCH, _MOTIF_LATENT + 1, frames, side, side)
    return {
        "hidden_states": torch.cat([latents, condition], dim=1),
        "encoder_hidden_states": _randn(generator, BATCH, 12, 32),
        "encoder_attention_mask": _text_mask(BATCH, 12),
        "return_dict": False,
    }


MOTIF_VIDEO = ZooCase(
    cls="MotifVideoTransformer3DModel",
    family="Motif-Video",
    modality="video",
    config=dict(
        in_channels=2 * _MOTIF_LATENT + 1,
        out_channels=_MOTIF_LATENT,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=1,
        num_single_layers=2,
        # The last single block is a decoder: it re-reads the patch embedding, the encoder as context.
        num_decoder_layers=1,
        mlp_ratio=4.0,
        patch_size=2,
        patch_size_t=1,
        qk_norm="rms_norm",
        norm_type="layer_norm",
        text_embed_dim=32,
        image_embed_dim=4,
        rope_theta=256.0,
        rope_axes_dim=(4, 4, 4),
        enable_text_cross_attention_dual=True,
        enable_text_cross_attention_single=True,
    ),
    inputs=_motif_inputs,
    update=_update_slice(dim=1, stop=_MOTIF_LATENT),
)


CASES: list[ZooCase] = [
    ALLEGRO,
    ANYFLOW,
    ANYFLOW_FAR,
    CHRONOEDIT,
    COGVIDEOX,
    COGVIDEOX_15,
    CONSISID,
    COSMOS,
    COSMOS_TEXT2WORLD,
    EASYANIMATE,
    HELIOS,
    HUNYUAN_VIDEO,
    HUNYUAN_VIDEO_I2V,
    HUNYUAN_VIDEO_15,
    HUNYUAN_VIDEO_15_I2V,
    HUNYUAN_VIDEO_FRAMEPACK,
    JOYIMAGE_EDIT,
    JOYIMAGE_EDIT_PLUS,
    KANDINSKY5,
    KANDINSKY6,
    KANDINSKY6_SR,
    MINIMAX_H3,
    MOTIF_VIDEO,
]
