"""Zoo cases, image models (part 1): AuraFlow through Krea 2.

Tiny configs follow diffusers' own model tests where a test exists, else the class's ``__init__``; the
inputs are what each pipeline passes to the transformer (ids, masks, guidance, micro-conditions), in
the timestep convention of its ``pipeline_*.py`` call. Batches hold two samples (a CFG pair) wherever
the model accepts them, with unequal prompt lengths where the pipeline pads prompts.
"""

from __future__ import annotations

from typing import Any

import torch

from smoothcache.reference.zoo import ZooCase

BATCH = 2


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


def _image_ids(height: int, width: int, axes: int = 3) -> torch.Tensor:
    """Flux-style position ids of a latent grid: ``[0, row, col]`` (``[0, row, col, 0]`` with 4 axes)."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ids = torch.zeros(height * width, axes)
    ids[:, 1] = rows.flatten()
    ids[:, 2] = cols.flatten()
    return ids


def _text_ids_4d(length: int) -> torch.Tensor:
    """FLUX.2-style text ids ``[0, 0, 0, token]``."""
    ids = torch.zeros(length, 4)
    ids[:, 3] = torch.arange(length)
    return ids


def _padded_mask(lengths: list[int], max_length: int) -> torch.Tensor:
    """Bool key-padding mask ``[batch, max_length]``, True for the first ``length`` tokens of each row."""
    return torch.arange(max_length)[None, :] < torch.tensor(lengths)[:, None]


def _long_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """Discrete schedulers (DDPM/DDIM) hand the model int64 timesteps."""
    return torch.full((inputs["hidden_states"].shape[0],), round(t), dtype=torch.long)


# AuraFlow: MMDiT joint blocks, then single blocks over [register + text, image].
def _auraflow_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 4, 16, 16),
        "encoder_hidden_states": _randn(g, BATCH, 16, 32),
        "return_dict": False,
    }


# Bria 3.2: Flux layout (joint + single blocks), no pooled projection, CFG batched.
def _bria_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 16, 4),
        "encoder_hidden_states": _randn(g, BATCH, 12, 32),
        "img_ids": _image_ids(4, 4),
        "txt_ids": torch.zeros(12, 3),
        "return_dict": False,
    }


# FIBO: before every block the second half of the text channels is replaced by that block's projected
# text-encoder layer; the negative prompt is zero-padded and masked through joint_attention_kwargs.
def _bria_fibo_inputs(g: torch.Generator) -> dict[str, Any]:
    text_length, image_side = 12, 4
    text_mask = _padded_mask([8, text_length], text_length)
    image_mask = torch.ones(BATCH, image_side * image_side, dtype=torch.bool)
    attention_mask = torch.cat([text_mask, image_mask], dim=1)[:, None, None, :]
    return {
        "hidden_states": _randn(g, BATCH, image_side * image_side, 16),
        "encoder_hidden_states": _randn(g, BATCH, text_length, 64),
        "text_encoder_layers": [_randn(g, BATCH, text_length, 32) for _ in range(2)],
        "img_ids": _image_ids(image_side, image_side),
        "txt_ids": torch.zeros(text_length, 3),
        "joint_attention_kwargs": {"attention_mask": attention_mask},
        "return_dict": False,
    }


# FIBO 2: Z-Image-style single stream of [gist tokens, image]; block 0 is a text-injection block.
def _bria_fibo2_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 4, 8, 8),
        # the perceiver's text bundle first, then one bundle per injection block
        "encoder_hidden_states": _randn(g, BATCH, 2, 8, 16),
        "return_dict": False,
    }


# Chroma: Flux without pooled/guidance inputs; the text padding mask covers [text, image].
def _chroma_inputs(g: torch.Generator) -> dict[str, Any]:
    text_length, image_tokens = 12, 16
    # Chroma keeps one padding token unmasked, as its pipeline does
    text_mask = _padded_mask([9, text_length], text_length)
    return {
        "hidden_states": _randn(g, BATCH, image_tokens, 4),
        "encoder_hidden_states": _randn(g, BATCH, text_length, 32),
        "img_ids": _image_ids(4, 4),
        "txt_ids": torch.zeros(text_length, 3),
        "attention_mask": torch.cat([text_mask, torch.ones(BATCH, image_tokens, dtype=torch.bool)], dim=1),
        "return_dict": False,
    }


def _cogview_size_conditions() -> dict[str, torch.Tensor]:
    """SDXL-style micro-conditions for a 64x64-pixel image (an 8x8 latent)."""
    return {
        "original_size": torch.tensor([[64.0, 64.0]] * BATCH),
        "target_size": torch.tensor([[64.0, 64.0]] * BATCH),
        "crop_coords": torch.zeros(BATCH, 2),
    }


def _cogview_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 4, 8, 8),
        "encoder_hidden_states": _randn(g, BATCH, 8, 8),
        **_cogview_size_conditions(),
        "return_dict": False,
    }


# DiT: class-conditional; the CFG pair is a class label and the null label (index num_classes).
def _dit_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 4, 8, 8),
        "class_labels": torch.tensor([3, 8]),
        "return_dict": False,
    }


# ERNIE-Image: text_lens builds the key-padding mask and offsets the image rope ids.
def _ernie_image_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 16, 8, 8),
        "text_bth": _randn(g, BATCH, 8, 16),
        "text_lens": torch.tensor([5, 8]),
        "return_dict": False,
    }


def _flux_inputs(g: torch.Generator, guidance: float | None) -> dict[str, Any]:
    inputs = {
        "hidden_states": _randn(g, BATCH, 16, 4),
        "encoder_hidden_states": _randn(g, BATCH, 12, 32),
        "pooled_projections": _randn(g, BATCH, 32),
        "img_ids": _image_ids(4, 4),
        "txt_ids": torch.zeros(12, 3),
        "return_dict": False,
    }
    if guidance is not None:
        # the pipeline passes the guidance scale itself; the model multiplies it by 1000
        inputs["guidance"] = torch.full((BATCH,), guidance)
    return inputs


def _flux2_inputs(g: torch.Generator, guidance: float | None) -> dict[str, Any]:
    # FLUX.2 pipelines pass batched ids [B, tokens, 4]; the model uses the first row
    return {
        "hidden_states": _randn(g, BATCH, 16, 4),
        "encoder_hidden_states": _randn(g, BATCH, 12, 32),
        "img_ids": _image_ids(4, 4, axes=4).expand(BATCH, -1, -1),
        "txt_ids": _text_ids_4d(12).expand(BATCH, -1, -1),
        "guidance": None if guidance is None else torch.full((BATCH,), guidance),
        "return_dict": False,
    }


# FLUX.3: per-mode blocks (text and image apart), then joint single blocks over [text, image].
def _flux3_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 16, 4),
        "encoder_hidden_states": _randn(g, BATCH, 12, 32),
        "img_ids": _image_ids(4, 4, axes=4),
        "txt_ids": _text_ids_4d(12),
        "return_dict": False,
    }


# GLM-Image: the autoregressive stage's prior tokens (one per image token) are added to the image
# stream; the unconditional sample drops them.
def _glm_image_inputs(g: torch.Generator) -> dict[str, Any]:
    image_tokens = 16
    return {
        "hidden_states": _randn(g, BATCH, 4, 8, 8),
        "encoder_hidden_states": _randn(g, BATCH, 12, 32),
        "prior_token_id": torch.randint(0, 64, (BATCH, image_tokens), generator=g),
        "prior_token_drop": torch.tensor([[False], [True]]).expand(BATCH, image_tokens).clone(),
        "target_size": torch.tensor([[64.0, 64.0]] * BATCH),
        "crop_coords": torch.zeros(BATCH, 2),
        "return_dict": False,
    }


def _glm_image_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    # GlmImagePipeline passes t - 1 (t = sigma * 1000)
    return torch.full((inputs["hidden_states"].shape[0],), float(t) - 1.0)


# HiDream-I1: T5 + pooled CLIP conditioning, and one Llama layer per block stacked on a leading axis.
def _hidream_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 4, 16, 16),
        "encoder_hidden_states_t5": _randn(g, BATCH, 8, 8),
        "encoder_hidden_states_llama3": _randn(g, 2, BATCH, 8, 4),
        "pooled_embeds": _randn(g, BATCH, 8),
        "return_dict": False,
    }


# Hunyuan-DiT: CLIP and T5 prompts with padding masks, size/style micro-conditions, and the 2-D rope
# the pipeline computes for a square image (crop region = the 512-px base grid).
def _hunyuan_dit_inputs(g: torch.Generator) -> dict[str, Any]:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    grid, base_grid, head_dim = 4, 32, 8
    return {
        "hidden_states": _randn(g, BATCH, 4, 8, 8),
        "encoder_hidden_states": _randn(g, BATCH, 8, 8),
        "text_embedding_mask": _padded_mask([5, 8], 8).long(),
        "encoder_hidden_states_t5": _randn(g, BATCH, 8, 8),
        "text_embedding_mask_t5": _padded_mask([6, 8], 8).long(),
        "image_meta_size": torch.tensor([[1024.0, 1024.0, 1024.0, 1024.0, 0.0, 0.0]] * BATCH),
        "style": torch.zeros(BATCH, dtype=torch.long),
        "image_rotary_emb": get_2d_rotary_pos_embed(head_dim, ((0, 0), (base_grid, base_grid)), (grid, grid)),
        "return_dict": False,
    }


# HunyuanImage 2.1: Qwen2.5-VL prompt refined by timestep-conditioned token-refiner blocks, ByT5 glyph
# tokens merged in per sample (valid tokens first).
def _hunyuan_image_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 4, 8, 8),
        "encoder_hidden_states": _randn(g, BATCH, 8, 32),
        "encoder_attention_mask": _padded_mask([5, 8], 8).long(),
        "encoder_hidden_states_2": _randn(g, BATCH, 6, 32),
        "encoder_attention_mask_2": _padded_mask([2, 4], 6).long(),
        "return_dict": False,
    }


# HunyuanImage 2.1 refiner: a one-frame video latent, the noisy latent and the image to refine
# concatenated on channels; guidance-distilled.
def _hunyuan_image_refiner_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _randn(g, BATCH, 8, 1, 8, 8),
        "encoder_hidden_states": _randn(g, BATCH, 8, 32),
        "encoder_attention_mask": _padded_mask([5, 8], 8).long(),
        # the refiner pipeline passes distilled_guidance_scale * 1000
        "guidance": torch.full((BATCH,), 3250.0),
        "return_dict": False,
    }


def _update_noisy_half(latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """The model predicts only the noisy channels; the conditioning channels stay as they are."""
    noisy_channels = prediction.shape[1]
    noisy = latent[:, :noisy_channels] - 0.1 * prediction
    return torch.cat([noisy, latent[:, noisy_channels:]], dim=1)


# Ideogram 4: one packed sequence [left padding, text, image]; indicator says which rows are text or
# image, segment_ids give a block-diagonal mask. Model time runs the other way: 0 is noise.
_IDEOGRAM4_TEXT_TOKENS = 8
_IDEOGRAM4_GRID = 4
_IDEOGRAM4_IMAGE_OFFSET = 65536  # keeps image positions apart from text positions, as the pipeline
_IDEOGRAM4_TEXT, _IDEOGRAM4_IMAGE, _IDEOGRAM4_PAD = 3, 2, -1


def _ideogram4_inputs(g: torch.Generator) -> dict[str, Any]:
    text_lengths = [5, _IDEOGRAM4_TEXT_TOKENS]
    max_text, grid = _IDEOGRAM4_TEXT_TOKENS, _IDEOGRAM4_GRID
    length = max_text + grid * grid
    image_positions = torch.zeros(grid * grid, 3, dtype=torch.long)
    image_positions[:, 1:] = _image_ids(grid, grid)[:, 1:].long()
    image_positions += _IDEOGRAM4_IMAGE_OFFSET

    position_ids = torch.zeros(BATCH, length, 3, dtype=torch.long)
    segment_ids = torch.full((BATCH, length), _IDEOGRAM4_PAD, dtype=torch.long)
    indicator = torch.zeros(BATCH, length, dtype=torch.long)
    for row, text_length in enumerate(text_lengths):
        start = max_text - text_length
        position_ids[row, start:max_text] = torch.arange(text_length)[:, None]
        position_ids[row, max_text:] = image_positions
        indicator[row, start:max_text] = _IDEOGRAM4_TEXT
        indicator[row, max_text:] = _IDEOGRAM4_IMAGE
        segment_ids[row, start:] = 1

    # the latent occupies the image rows; text rows of hidden_states and image rows of the text
    # features are masked out by the model
    hidden_states = torch.zeros(BATCH, length, 16)
    hidden_states[:, max_text:] = _randn(g, BATCH, grid * grid, 16)
    encoder_hidden_states = _randn(g, BATCH, length, 24) * (indicator == _IDEOGRAM4_TEXT)[..., None]
    return {
        "hidden_states": hidden_states,
        "encoder_hidden_states": encoder_hidden_states,
        "position_ids": position_ids,
        "segment_ids": segment_ids,
        "indicator": indicator,
        "return_dict": False,
    }


def _ideogram4_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    # Ideogram4Pipeline: t_model = 1 - sigma (0 is pure noise, 1 is clean data)
    return torch.full((inputs["hidden_states"].shape[0],), 1.0 - float(t))


# Krea 2: stacked text-encoder layers fused by text blocks, then one single stream [text, image].
def _krea2_inputs(g: torch.Generator) -> dict[str, Any]:
    text_length, grid = 8, 4
    position_ids = torch.zeros(text_length + grid * grid, 3)
    position_ids[text_length:] = _image_ids(grid, grid)
    return {
        "hidden_states": _randn(g, BATCH, grid * grid, 16),
        "encoder_hidden_states": _randn(g, BATCH, text_length, 3, 16),
        "position_ids": position_ids,
        "encoder_attention_mask": _padded_mask([5, text_length], text_length),
        "return_dict": False,
    }


_FLUX_CONFIG = {
    "patch_size": 1,
    "in_channels": 4,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "axes_dims_rope": [4, 4, 8],
}

_FLUX2_CONFIG = {
    "patch_size": 1,
    "in_channels": 4,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "timestep_guidance_channels": 256,
    "axes_dims_rope": [4, 4, 4, 4],
}

_HUNYUAN_IMAGE_CONFIG = {
    "in_channels": 4,
    "out_channels": 4,
    "num_attention_heads": 4,
    "attention_head_dim": 8,
    "num_layers": 1,
    "num_single_layers": 1,
    "num_refiner_layers": 1,
    "patch_size": [1, 1],
    "text_embed_dim": 32,
    "rope_axes_dim": [4, 4],
}

CASES: list[ZooCase] = [
    ZooCase(
        cls="AuraFlowTransformer2DModel",
        family="AuraFlow",
        modality="image",
        config={
            "sample_size": 16,
            "patch_size": 2,
            "in_channels": 4,
            "num_mmdit_layers": 1,
            "num_single_dit_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 4,
            "joint_attention_dim": 32,
            "caption_projection_dim": 32,
            "out_channels": 4,
            "pos_embed_max_size": 64,
        },
        inputs=_auraflow_inputs,
        # AuraFlowPipeline passes t / 1000
        timestep_range=1.0,
    ),
    ZooCase(
        cls="BriaTransformer2DModel",
        family="Bria 3.2",
        modality="image",
        config={
            "patch_size": 1,
            "in_channels": 4,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "joint_attention_dim": 32,
            "pooled_projection_dim": None,
            "axes_dims_rope": [0, 4, 4],
        },
        inputs=_bria_inputs,
    ),
    ZooCase(
        cls="BriaFiboTransformer2DModel",
        family="Bria FIBO",
        modality="image",
        config={
            "patch_size": 1,
            "in_channels": 16,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "joint_attention_dim": 64,
            "text_encoder_dim": 32,
            "pooled_projection_dim": None,
            "axes_dims_rope": [0, 4, 4],
        },
        inputs=_bria_fibo_inputs,
    ),
    ZooCase(
        cls="BriaFibo2Transformer2DModel",
        family="Bria FIBO 2",
        modality="image",
        config={
            "in_channels": 4,
            "patch_size": 2,
            "dim": 32,
            "n_layers": 2,
            "n_refiner_layers": 1,
            "n_heads": 2,
            "cap_feat_dim": 16,
            # the real model injects text at layers 6, 14, ...; layer 0 here so a tiny model has one
            "injection_layer_ids": [0],
            "perceiver_num_layers": 1,
            "min_num_gist_tokens": 4,
            "max_num_gist_tokens": 8,
            "gist_step": 4,
            "gist_min_text_len": 4,
            "gist_max_text_len": 16,
            "axes_dims": [4, 6, 6],
            "axes_lens": [16, 8, 8],
        },
        inputs=_bria_fibo2_inputs,
        # BriaFibo2Pipeline passes t / 1000; the model scales by t_scale
        timestep_range=1.0,
    ),
    ZooCase(
        cls="ChromaTransformer2DModel",
        family="Chroma",
        modality="image",
        config={
            "patch_size": 1,
            "in_channels": 4,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 32,
            "axes_dims_rope": [4, 4, 8],
            "approximator_num_channels": 8,
            "approximator_hidden_dim": 16,
            "approximator_layers": 1,
        },
        inputs=_chroma_inputs,
        # ChromaPipeline passes t / 1000
        timestep_range=1.0,
    ),
    ZooCase(
        cls="CogView3PlusTransformer2DModel",
        family="CogView3-Plus",
        modality="image",
        config={
            "patch_size": 2,
            "in_channels": 4,
            "num_layers": 2,
            "attention_head_dim": 4,
            "num_attention_heads": 2,
            "out_channels": 4,
            "text_embed_dim": 8,
            "time_embed_dim": 8,
            "condition_dim": 2,
            "pos_embed_max_size": 8,
            "sample_size": 8,
        },
        inputs=_cogview_inputs,
        # CogVideoXDDIMScheduler: integer timesteps 999 .. 0
        timestep_range=999.0,
        make_timestep=_long_timestep,
    ),
    ZooCase(
        cls="CogView4Transformer2DModel",
        family="CogView4",
        modality="image",
        config={
            "patch_size": 2,
            "in_channels": 4,
            "num_layers": 2,
            "attention_head_dim": 4,
            "num_attention_heads": 4,
            "out_channels": 4,
            "text_embed_dim": 8,
            "time_embed_dim": 8,
            "condition_dim": 4,
        },
        inputs=_cogview_inputs,
    ),
    ZooCase(
        cls="DiTTransformer2DModel",
        family="DiT",
        modality="image",
        config={
            "in_channels": 4,
            "out_channels": 8,
            "activation_fn": "gelu-approximate",
            "num_attention_heads": 2,
            "attention_head_dim": 4,
            "attention_bias": True,
            "num_layers": 2,
            "norm_type": "ada_norm_zero",
            "num_embeds_ada_norm": 8,
            "patch_size": 2,
            "sample_size": 8,
        },
        inputs=_dit_inputs,
        # DiTPipeline's schedulers hand out int64 timesteps 999 .. 0
        timestep_range=999.0,
        make_timestep=_long_timestep,
    ),
    ZooCase(
        cls="DreamLiteTransformer2DModel",
        family="DreamLite",
        modality="image",
        reason=(
            "DreamLiteTransformer2DModel is the spatial-transformer layer inside the DreamLite U-Net: the U-Net "
            "calls it without a timestep and it returns its input plus a residual, so the denoiser to cache "
            "is the U-Net, not this class."
        ),
    ),
    ZooCase(
        cls="ErnieImageTransformer2DModel",
        family="ERNIE-Image",
        modality="image",
        config={
            "hidden_size": 32,
            "num_attention_heads": 2,
            "num_layers": 2,
            "ffn_hidden_size": 64,
            "in_channels": 16,
            "out_channels": 16,
            "patch_size": 1,
            "text_in_dim": 16,
            "rope_theta": 256,
            "rope_axes_dim": [8, 4, 4],
        },
        inputs=_ernie_image_inputs,
    ),
    ZooCase(
        cls="FluxTransformer2DModel",
        variant="schnell",
        family="FLUX.1",
        modality="image",
        config=_FLUX_CONFIG,
        inputs=lambda g: _flux_inputs(g, guidance=None),
        # FluxPipeline passes t / 1000
        timestep_range=1.0,
    ),
    ZooCase(
        cls="FluxTransformer2DModel",
        variant="dev",
        family="FLUX.1",
        modality="image",
        config={**_FLUX_CONFIG, "guidance_embeds": True},
        inputs=lambda g: _flux_inputs(g, guidance=3.5),
        timestep_range=1.0,
    ),
    ZooCase(
        cls="Flux2Transformer2DModel",
        variant="dev",
        family="FLUX.2",
        modality="image",
        config={**_FLUX2_CONFIG, "guidance_embeds": True},
        inputs=lambda g: _flux2_inputs(g, guidance=4.0),
        # Flux2Pipeline passes t / 1000
        timestep_range=1.0,
    ),
    ZooCase(
        cls="Flux2Transformer2DModel",
        variant="klein",
        family="FLUX.2",
        modality="image",
        config={**_FLUX2_CONFIG, "guidance_embeds": False},
        inputs=lambda g: _flux2_inputs(g, guidance=None),
        timestep_range=1.0,
    ),
    ZooCase(
        cls="Flux3Transformer2DModel",
        family="FLUX.3",
        modality="image",
        config={
            "in_channels": 4,
            "cond_in_channels": 4,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 32,
            "axes_dims_rope": [4, 4, 4, 4],
        },
        inputs=_flux3_inputs,
        # the forward documents the image timestep as a flow time in [0, 1]
        timestep_range=1.0,
    ),
    ZooCase(
        cls="GlmImageTransformer2DModel",
        family="GLM-Image",
        modality="image",
        config={
            "patch_size": 2,
            "in_channels": 4,
            "out_channels": 4,
            "num_layers": 2,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "text_embed_dim": 32,
            "time_embed_dim": 16,
            "condition_dim": 8,
            "prior_vq_quantizer_codebook_size": 64,
        },
        inputs=_glm_image_inputs,
        make_timestep=_glm_image_timestep,
    ),
    ZooCase(
        cls="HiDreamImageTransformer2DModel",
        family="HiDream-I1",
        modality="image",
        config={
            "patch_size": 2,
            "in_channels": 4,
            "out_channels": 4,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 4,
            "caption_channels": [8, 4],
            "text_emb_dim": 8,
            # 2 of 4 experts per token, as the real model, so routing actually chooses
            "num_routed_experts": 4,
            "num_activated_experts": 2,
            "axes_dims_rope": [4, 2, 2],
            "max_resolution": [16, 16],
            "llama_layers": [0, 1],
        },
        inputs=_hidream_inputs,
        timestep="timesteps",
    ),
    ZooCase(
        cls="HunyuanDiT2DModel",
        family="Hunyuan-DiT",
        modality="image",
        config={
            "sample_size": 8,
            "patch_size": 2,
            "in_channels": 4,
            # four blocks: the smallest depth with a long skip (block 3 reads block 0's output)
            "num_layers": 4,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "hidden_size": 16,
            "cross_attention_dim": 8,
            "cross_attention_dim_t5": 8,
            "pooled_projection_dim": 4,
            "text_len": 8,
            "text_len_t5": 8,
            "activation_fn": "gelu-approximate",
        },
        inputs=_hunyuan_dit_inputs,
        # DDPM timesteps 999 .. 0, passed as floats by HunyuanDiTPipeline
        timestep_range=999.0,
    ),
    ZooCase(
        cls="HunyuanImageTransformer2DModel",
        family="HunyuanImage 2.1",
        modality="image",
        config={**_HUNYUAN_IMAGE_CONFIG, "guidance_embeds": False, "text_embed_2_dim": 32},
        inputs=_hunyuan_image_inputs,
    ),
    ZooCase(
        cls="HunyuanImageTransformer2DModel",
        variant="refiner",
        family="HunyuanImage 2.1",
        modality="image",
        config={
            **_HUNYUAN_IMAGE_CONFIG,
            "in_channels": 8,
            "guidance_embeds": True,
            "patch_size": [1, 1, 1],
            "rope_axes_dim": [2, 2, 4],
        },
        inputs=_hunyuan_image_refiner_inputs,
        update=_update_noisy_half,
    ),
    ZooCase(
        cls="Ideogram4Transformer2DModel",
        family="Ideogram 4",
        modality="image",
        config={
            "in_channels": 16,
            "num_layers": 2,
            "attention_head_dim": 8,
            "num_attention_heads": 4,
            "intermediate_size": 32,
            "adaln_dim": 16,
            "llm_features_dim": 24,
            "rope_theta": 10_000,
            "mrope_section": [2, 1, 1],
        },
        inputs=_ideogram4_inputs,
        timestep_range=1.0,
        make_timestep=_ideogram4_timestep,
    ),
    ZooCase(
        cls="Krea2Transformer2DModel",
        family="Krea 2",
        modality="image",
        config={
            "in_channels": 16,
            "num_layers": 2,
            "attention_head_dim": 8,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 32,
            "timestep_embed_dim": 8,
            "text_hidden_dim": 16,
            "num_text_layers": 3,
            "text_num_attention_heads": 2,
            "text_num_key_value_heads": 1,
            "text_intermediate_size": 16,
            "num_layerwise_text_blocks": 1,
            "num_refiner_text_blocks": 1,
            "axes_dims_rope": [4, 2, 2],
        },
        inputs=_krea2_inputs,
        # Krea2Pipeline passes t / num_train_timesteps
        timestep_range=1.0,
    ),
]
