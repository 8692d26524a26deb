"""Zoo cases, image part 2: LongCat-Image to Z-Image, the generic 2D transformer and the odd ones out.

Each case builds one diffusers class tiny and gives one model evaluation's inputs the way the class's
pipeline passes them: the same argument names, shapes, dtypes, masks, position ids and timestep
convention (several models run time from 0 at pure noise to 1 at the image; their ``make_timestep``
turns the loop's decreasing ``t`` around). Sizes follow diffusers' own model tests where they exist
and the class signatures otherwise.
"""

from __future__ import annotations

from typing import Any

import torch

from smoothcache.reference.zoo import ZooCase

# Two prompts of different lengths, so every text mask the pipelines build has padding in it.
TEXT_LENGTHS = (8, 5)


def padding_mask(lengths: tuple[int, ...], max_length: int, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """``[batch, max_length]``: one for each sample's first ``length`` tokens (right padding)."""
    positions = torch.arange(max_length)
    return (positions[None, :] < torch.tensor(lengths)[:, None]).to(dtype)


def batch_timestep(t: float, batch_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.full((batch_size,), t, dtype=dtype)


def reversed_time(latent: str = "hidden_states"):
    """``1 - t`` per sample: for models whose time runs from 0 (pure noise) to 1 (image)."""

    def make(t: float, inputs: dict[str, Any]) -> torch.Tensor:
        return batch_timestep(1.0 - t, len(inputs[latent]))

    return make


def integer_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """An int64 ``[batch]`` tensor, as the discrete schedulers (DPM-Solver, DDPM) hand to the model."""
    return batch_timestep(round(t), inputs["hidden_states"].shape[0], torch.long)


def scalar_integer_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """A 0-dim int64 tensor: the UnCLIP / VQ-Diffusion loops pass the scheduler's ``t`` unchanged."""
    return torch.tensor(round(t), dtype=torch.long)


def target_tokens_prediction(latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """Qwen-Image 2.1 predicts over the joint text + image sequence; the image tokens come last."""
    return latent - 0.1 * prediction[:, -latent.shape[1] :]


def step_each_item(latents: list[torch.Tensor], prediction: torch.Tensor) -> list[torch.Tensor]:
    """Latents passed as a list of per-item tensors; the loop sees the first item's prediction only."""
    return [latent - 0.1 * prediction.reshape(latent.shape) for latent in latents]


def flux_style_ids(text_length: int, height: int, width: int, image_start: int = 0, image_axis0: float = 0.0):
    """``(txt_ids, img_ids)``: text counts along axes 1 and 2; image tokens carry (row, col) from ``image_start``."""
    txt_ids = torch.zeros(text_length, 3)
    txt_ids[:, 1] = txt_ids[:, 2] = torch.arange(text_length, dtype=torch.float32)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    img_ids = torch.stack([torch.full((height * width,), image_axis0), rows.flatten() + image_start, cols.flatten() + image_start], dim=1)
    return txt_ids, img_ids.float()


# --- FLUX-like double/single-stream models -------------------------------------------------------


def longcat_image_inputs(g: torch.Generator) -> dict[str, Any]:
    text_length = 12
    # LongCat marks modality in axis 0 and starts the image grid after the (padded) prompt.
    txt_ids, img_ids = flux_style_ids(text_length, 4, 4, image_start=text_length, image_axis0=1.0)
    return {
        "hidden_states": torch.randn(2, 16, 4, generator=g),
        "encoder_hidden_states": torch.randn(2, text_length, 32, generator=g),
        "txt_ids": txt_ids,
        "img_ids": img_ids,
        "return_dict": False,
    }


def ovis_image_inputs(g: torch.Generator) -> dict[str, Any]:
    text_length = 12
    txt_ids, img_ids = flux_style_ids(text_length, 4, 4)
    return {
        "hidden_states": torch.randn(2, 16, 4, generator=g),
        "encoder_hidden_states": torch.randn(2, text_length, 32, generator=g),
        "txt_ids": txt_ids,
        "img_ids": img_ids,
        "return_dict": False,
    }


# --- Qwen-Image family and relatives -------------------------------------------------------------


def qwen_image_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        # 4x4 tokens of 2x2-packed 4-channel latents.
        "hidden_states": torch.randn(2, 16, 16, generator=g),
        "encoder_hidden_states": torch.randn(2, max(TEXT_LENGTHS), 16, generator=g),
        "encoder_hidden_states_mask": padding_mask(TEXT_LENGTHS, max(TEXT_LENGTHS), torch.long),
        "img_shapes": [[(1, 4, 4)]] * 2,
        "return_dict": False,
    }


def qwen_image21_inputs(g: torch.Generator) -> dict[str, Any]:
    text_length, height, width = max(TEXT_LENGTHS), 8, 8
    # Text-to-image: no condition images; the target image takes one VLM slot per 2x2 latent tokens.
    target_slots = height * width // 4
    image_slot_mask = torch.cat([torch.zeros(text_length), torch.ones(target_slots)]).bool()
    return {
        "hidden_states": torch.randn(2, height * width, 16, generator=g),
        "encoder_hidden_states": torch.randn(2, text_length, 16, generator=g),
        "encoder_hidden_states_mask": padding_mask(TEXT_LENGTHS, text_length),
        "img_shapes": [[(1, height, width)]] * 2,
        "img_mask": image_slot_mask.expand(2, -1).clone(),
        "return_dict": False,
    }


def nucleus_moe_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": torch.randn(2, 16, 16, generator=g),
        "encoder_hidden_states": torch.randn(2, max(TEXT_LENGTHS), 16, generator=g),
        "encoder_hidden_states_mask": padding_mask(TEXT_LENGTHS, max(TEXT_LENGTHS), torch.long),
        "img_shapes": [(1, 4, 4)] * 2,
        "return_dict": False,
    }


# --- Lumina, Z-Image, OmniGen: LLM-style pre-norm blocks -----------------------------------------


def lumina2_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": torch.randn(2, 4, 16, 16, generator=g),
        "encoder_hidden_states": torch.randn(2, 16, 32, generator=g),
        "encoder_attention_mask": padding_mask((16, 11), 16),
        "return_dict": False,
    }


def lumina_next_inputs(g: torch.Generator) -> dict[str, Any]:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

    head_dim, grid = 8, 8
    return {
        "hidden_states": torch.randn(2, 4, 16, 16, generator=g),
        "encoder_hidden_states": torch.randn(2, max(TEXT_LENGTHS), 32, generator=g),
        "encoder_mask": padding_mask(TEXT_LENGTHS, max(TEXT_LENGTHS), torch.long),
        # The pipeline builds a 384x384 grid; the model reads its first grid x grid corner only.
        "image_rotary_emb": get_2d_rotary_pos_embed_lumina(head_dim, grid, grid),
        # Proportional attention, as the pipeline's default: base length = the default image's tokens.
        "cross_attention_kwargs": {"base_sequence_length": grid * grid},
        "return_dict": False,
    }


def z_image_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        # The pipeline passes one [C, F, H, W] latent and one unpadded caption per sample, as lists.
        "x": [torch.randn(16, 1, 8, 8, generator=g) for _ in range(2)],
        "cap_feats": [torch.randn(length, 16, generator=g) for length in (12, 7)],
        "return_dict": False,
    }


def omnigen_inputs(g: torch.Generator) -> dict[str, Any]:
    # Text-to-image with guidance: a conditional and an unconditional prompt, left-padded to one length,
    # then one time token and the 4x4 image tokens; causal over text, bidirectional over the image.
    text_lengths, image_tokens = (10, 6), 16
    text_length = max(text_lengths)
    sequence_length = text_length + 1 + image_tokens
    input_ids = torch.randint(1, 1000, (2, text_length), generator=g)
    attention_mask = torch.zeros(2, sequence_length, sequence_length)
    position_ids = torch.zeros(2, sequence_length, dtype=torch.long)
    for row, length in enumerate(text_lengths):
        pad = text_length - length
        input_ids[row, :pad] = 0  # pad_token_id
        attention_mask[row, :pad, :] = 1  # padding queries see everything (as the processor builds it)
        attention_mask[row, pad:, pad:] = torch.tril(torch.ones(sequence_length - pad, sequence_length - pad))
        attention_mask[row, -image_tokens:, pad:] = 1
        position_ids[row, pad:] = torch.arange(sequence_length - pad)
    return {
        "hidden_states": torch.randn(2, 4, 8, 8, generator=g),
        "input_ids": input_ids,
        "input_img_latents": [],
        "input_image_sizes": {},
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "return_dict": False,
    }


# --- cross-attention DiTs: PixArt, Sana, PRX -----------------------------------------------------


def pixart_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": torch.randn(2, 4, 8, 8, generator=g),
        "encoder_hidden_states": torch.randn(2, max(TEXT_LENGTHS), 8, generator=g),
        "encoder_attention_mask": padding_mask(TEXT_LENGTHS, max(TEXT_LENGTHS), torch.long),
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
        "return_dict": False,
    }


def sana_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": torch.randn(2, 4, 8, 8, generator=g),
        "encoder_hidden_states": torch.randn(2, max(TEXT_LENGTHS), 8, generator=g),
        "encoder_attention_mask": padding_mask(TEXT_LENGTHS, max(TEXT_LENGTHS), torch.long),
        "return_dict": False,
    }


def prx_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": torch.randn(2, 4, 8, 8, generator=g),
        "encoder_hidden_states": torch.randn(2, max(TEXT_LENGTHS), 16, generator=g),
        "attention_mask": padding_mask(TEXT_LENGTHS, max(TEXT_LENGTHS)),
        "return_dict": False,
    }


def sd3_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": torch.randn(2, 4, 8, 8, generator=g),
        "encoder_hidden_states": torch.randn(2, 12, 32, generator=g),
        "pooled_projections": torch.randn(2, 64, generator=g),
        "return_dict": False,
    }


# --- the generic 2D transformer, the prior, and the non-image denoisers ---------------------------


def vq_diffusion_inputs(g: torch.Generator) -> dict[str, Any]:
    # Codebook indices of a 4x4 latent; index 16 is the mask token.
    return {
        "hidden_states": torch.randint(0, 17, (2, 16), generator=g),
        "encoder_hidden_states": torch.randn(2, 8, 16, generator=g),
        "return_dict": False,
    }


def vq_diffusion_update(latent: torch.Tensor, log_probabilities: torch.Tensor) -> torch.Tensor:
    """The most likely code per latent pixel: the model predicts log p(x_0) over the codebook."""
    return log_probabilities.argmax(dim=1)


def prior_inputs(g: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": torch.randn(2, 8, generator=g),
        "proj_embedding": torch.randn(2, 8, generator=g),
        "encoder_hidden_states": torch.randn(2, 7, 8, generator=g),
        "attention_mask": padding_mask((7, 4), 7),
        "return_dict": False,
    }


COSMOS3_TEXT_TOKENS = 6
COSMOS3_VISION_TOKENS = 16  # one latent frame, 8x8 latents in 2x2 patches


def cosmos3_inputs(g: torch.Generator) -> dict[str, Any]:
    # One packed sequence (no batch axis): the text prefix, then the vision tokens.
    text, vision = COSMOS3_TEXT_TOKENS, COSMOS3_VISION_TOKENS
    text_positions = torch.arange(text).expand(3, -1)
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    # Vision mRoPE ids: time after the text plus the modality margin, spatial ids restarted at zero.
    vision_positions = torch.stack([torch.full((vision,), text + 15000), rows.flatten(), cols.flatten()])
    vision_indexes = torch.arange(text, text + vision)
    return {
        "input_ids": torch.randint(0, 32, (text,), generator=g),
        "text_indexes": torch.arange(text),
        "position_ids": torch.cat([text_positions, vision_positions], dim=1),
        "und_len": text,
        "sequence_length": text + vision,
        "vision_tokens": [torch.randn(1, 4, 1, 8, 8, generator=g)],
        "vision_token_shapes": [(1, 4, 4)],
        "vision_sequence_indexes": vision_indexes,
        "vision_mse_loss_indexes": vision_indexes,
        "vision_noisy_frame_indexes": [torch.tensor([0])],
        "return_dict": False,
    }


def cosmos3_timestep(t: float, inputs: dict[str, Any]) -> torch.Tensor:
    """One timestep per noisy vision token, as the pipeline splices in every step."""
    return torch.full((COSMOS3_VISION_TOKENS,), t)


def rfd4_proteina_inputs(g: torch.Generator) -> dict[str, Any]:
    tokens = 8
    mask = padding_mask((8, 6), tokens)
    index = torch.arange(tokens)
    return {
        "bb_ca": torch.randn(2, tokens, 3, generator=g) * mask[..., None],
        "local_latents": torch.randn(2, tokens, 4, generator=g) * mask[..., None],
        # The local-latent modality keeps its own schedule; a zoo case advances only the backbone's.
        "local_latents_time": torch.full((2,), 0.5),
        "padding_mask": mask,
        "token_type": torch.zeros(2, tokens, dtype=torch.long),  # protein
        "conditioning": {
            "is_in_context_conditioning": torch.zeros(2, tokens, dtype=torch.bool),
            "supports_local_latent": mask.clone(),
            "token_bond_path_length": (index[:, None] - index[None, :]).abs().expand(2, -1, -1),
        },
        # The released schedule runs the trunk 6 to 1 times per step; two passes keep the recycling visible.
        "recycle_depth": 2,
        "return_dict": False,
    }


def t5_film_inputs(g: torch.Generator) -> dict[str, Any]:
    # The note encoder's and the continuous (previous segment) encoder's outputs with their masks.
    return {
        "encodings_and_masks": [
            (torch.randn(2, 6, 16, generator=g), padding_mask((6, 4), 6)),
            (torch.randn(2, 4, 16, generator=g), padding_mask((4, 4), 4)),
        ],
        "decoder_input_tokens": torch.randn(2, 16, 8, generator=g),
    }


CASES: list[ZooCase] = [
    ZooCase(
        cls="LongCatImageTransformer2DModel",
        family="LongCat-Image",
        modality="image",
        config=dict(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 4, 8],
        ),
        inputs=longcat_image_inputs,
        timestep_range=1.0,  # the pipeline passes t / 1000; the model multiplies by 1000 again
    ),
    ZooCase(
        cls="Lumina2Transformer2DModel",
        family="Lumina-Image 2.0",
        modality="image",
        config=dict(
            sample_size=16,
            patch_size=2,
            in_channels=4,
            hidden_size=24,
            num_layers=2,
            num_refiner_layers=1,
            num_attention_heads=3,
            num_kv_heads=1,
            multiple_of=2,
            norm_eps=1e-5,
            axes_dim_rope=(4, 2, 2),
            axes_lens=(128, 128, 128),
            cap_feat_dim=32,
        ),
        inputs=lumina2_inputs,
        timestep_range=1.0,
        make_timestep=reversed_time(),
    ),
    ZooCase(
        cls="LuminaNextDiT2DModel",
        family="Lumina-Next",
        modality="image",
        config=dict(
            sample_size=16,
            patch_size=2,
            in_channels=4,
            hidden_size=24,
            num_layers=2,
            num_attention_heads=3,
            num_kv_heads=1,
            multiple_of=16,
            norm_eps=1e-5,
            learn_sigma=True,
            qk_norm=True,
            cross_attention_dim=32,
        ),
        inputs=lumina_next_inputs,
        timestep_range=1.0,
        make_timestep=reversed_time(),
    ),
    ZooCase(
        cls="NucleusMoEImageTransformer2DModel",
        family="Nucleus-Image (MoE)",
        modality="image",
        config=dict(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            # Width 64: the dense feed-forward rounds its width down to a multiple of 128 (zero below 48).
            num_attention_heads=4,
            joint_attention_dim=16,
            axes_dims_rope=(8, 4, 4),
            # The released model is MoE after its first dense blocks; one dense and one MoE block here.
            moe_enabled=True,
            dense_moe_strategy="leave_first_block_dense",
            num_experts=4,
            moe_intermediate_dim=32,
            capacity_factors=[2.0, 2.0],
        ),
        inputs=nucleus_moe_inputs,
        timestep_range=1.0,
    ),
    ZooCase(
        cls="OmniGenTransformer2DModel",
        family="OmniGen",
        modality="image",
        config=dict(
            hidden_size=16,
            num_attention_heads=4,
            num_key_value_heads=4,
            intermediate_size=32,
            num_layers=2,
            pad_token_id=0,
            vocab_size=1000,
            in_channels=4,
            time_step_dim=4,
            pos_embed_max_size=16,
            rope_scaling={"long_factor": [1.0, 2.0], "short_factor": [1.0, 2.0]},
        ),
        inputs=omnigen_inputs,
        # FlowMatch with invert_sigmas and one train timestep: time runs from 0 (noise) to 1.
        timestep_range=1.0,
        make_timestep=reversed_time(),
    ),
    ZooCase(
        cls="OvisImageTransformer2DModel",
        family="Ovis-Image",
        modality="image",
        config=dict(
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            axes_dims_rope=(4, 4, 8),
        ),
        inputs=ovis_image_inputs,
        timestep_range=1.0,
    ),
    ZooCase(
        cls="PRXTransformer2DModel",
        family="PRX (Photoroom)",
        modality="image",
        config=dict(
            in_channels=4,
            patch_size=2,
            context_in_dim=16,
            hidden_size=32,
            mlp_ratio=2.0,
            num_heads=2,
            depth=2,
            axes_dim=[8, 8],
        ),
        inputs=prx_inputs,
        timestep_range=1.0,
    ),
    ZooCase(
        cls="PixArtTransformer2DModel",
        family="PixArt-α / Σ",
        modality="image",
        config=dict(
            sample_size=8,
            num_layers=2,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=2,
            in_channels=4,
            out_channels=8,
            cross_attention_dim=16,
            caption_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            use_additional_conditions=False,
        ),
        inputs=pixart_inputs,
        timestep_range=999.0,
        make_timestep=integer_timestep,
    ),
    ZooCase(
        cls="QwenImageTransformer2DModel",
        family="Qwen-Image",
        modality="image",
        config=dict(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=16,
            axes_dims_rope=(8, 4, 4),
        ),
        inputs=qwen_image_inputs,
        timestep_range=1.0,
    ),
    ZooCase(
        cls="QwenImage21Transformer2DModel",
        family="Qwen-Image 2.1",
        modality="image",
        config=dict(
            patch_size=1,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            context_in_dim=16,
            mlp_ratio=3,
            axes_dims_rope=(8, 4, 4),
        ),
        # Without the pipeline's prefix KV cache (use_kv_cache=False): with it, the first step runs the
        # whole sequence and later steps only the target image's tokens.
        inputs=qwen_image21_inputs,
        timestep_range=1.0,
        update=target_tokens_prediction,
    ),
    ZooCase(
        cls="SD3Transformer2DModel",
        family="Stable Diffusion 3 / 3.5 Large",
        modality="image",
        config=dict(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=32,
            pooled_projection_dim=64,
            out_channels=4,
            pos_embed_max_size=16,
        ),
        inputs=sd3_inputs,
    ),
    ZooCase(
        cls="SD3Transformer2DModel",
        variant="dual_attention",
        family="Stable Diffusion 3.5 Medium",
        modality="image",
        config=dict(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=32,
            pooled_projection_dim=64,
            out_channels=4,
            pos_embed_max_size=16,
            dual_attention_layers=(0,),
            qk_norm="rms_norm",
        ),
        inputs=sd3_inputs,
    ),
    ZooCase(
        cls="SanaTransformer2DModel",
        family="Sana",
        modality="image",
        config=dict(
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            attention_head_dim=4,
            num_attention_heads=2,
            num_cross_attention_heads=2,
            cross_attention_head_dim=4,
            cross_attention_dim=8,
            caption_channels=8,
            sample_size=8,
        ),
        inputs=sana_inputs,
    ),
    ZooCase(
        cls="ZImageTransformer2DModel",
        family="Z-Image",
        modality="image",
        config=dict(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=32,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            qk_norm=True,
            cap_feat_dim=16,
            axes_dims=[8, 4, 4],
            axes_lens=[256, 32, 32],
        ),
        inputs=z_image_inputs,
        latent="x",
        timestep="t",
        # The pipeline passes (1000 - t) / 1000: time 0 is pure noise.
        timestep_range=1.0,
        make_timestep=reversed_time("x"),
        update=step_each_item,
    ),
    ZooCase(
        cls="Transformer2DModel",
        variant="vq_diffusion",
        family="VQ-Diffusion",
        modality="image",
        # Discrete inputs: the only configuration diffusers still runs this class as a denoiser with;
        # patched DiT / PixArt checkpoints load as their own classes.
        config=dict(
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=2,
            cross_attention_dim=16,
            attention_bias=True,
            sample_size=4,
            num_vector_embeds=17,
            activation_fn="geglu-approximate",
            num_embeds_ada_norm=100,
            norm_type="ada_norm",
        ),
        inputs=vq_diffusion_inputs,
        timestep_range=99.0,  # 100 discrete steps; AdaLayerNorm needs a 0-dim timestep
        make_timestep=scalar_integer_timestep,
        update=vq_diffusion_update,
    ),
    ZooCase(
        cls="PriorTransformer",
        family="Kandinsky 2.x / unCLIP prior",
        modality="other",
        config=dict(
            num_attention_heads=2,
            attention_head_dim=4,
            num_layers=2,
            embedding_dim=8,
            num_embeddings=7,
            additional_embeddings=4,
        ),
        inputs=prior_inputs,
        timestep_range=999.0,
        make_timestep=scalar_integer_timestep,
    ),
    ZooCase(
        cls="Cosmos3OmniTransformer",
        family="Cosmos 3 Omni",
        modality="video",
        config=dict(
            head_dim=8,
            hidden_size=16,
            intermediate_size=32,
            latent_channel=4,
            latent_patch_size=2,
            num_attention_heads=2,
            num_hidden_layers=2,
            num_key_value_heads=1,
            patch_latent_dim=16,
            rope_axes_dim=[2, 1, 1],
            rope_theta=1e6,
            vocab_size=32,
        ),
        inputs=cosmos3_inputs,
        latent="vision_tokens",
        timestep="vision_timesteps",
        make_timestep=cosmos3_timestep,
        update=step_each_item,
    ),
    ZooCase(
        cls="RFD4ProteinaTransformer",
        family="RFdiffusion4 / Proteina",
        modality="other",
        config=dict(
            nlayers=2,
            token_dim=16,
            nheads=2,
            dim_cond=16,
            pair_repr_dim=8,
            latent_dim=4,
            token_type_emb_dim=4,
            cath_emb_dim=4,
            t_emb_dim=16,
            seq_sep_dim=8,
            xt_pair_dist_dim=8,
            tri_mult_c=8,
            feats_seq=("xt_bb_ca", "xt_local_latents", "token_type"),
            feats_cond_seq=("time_emb_bb_ca", "time_emb_local_latents"),
            feats_pair_repr=("xt_bb_ca_pair_dists", "token_bond_path_length"),
            feats_pair_cond=("time_emb_bb_ca", "time_emb_local_latents"),
        ),
        inputs=rfd4_proteina_inputs,
        latent="bb_ca",
        timestep="bb_ca_time",
        # Flow-matching time in [0, 1], 0 at pure noise (the clean estimate is x + (1 - t) v).
        timestep_range=1.0,
        make_timestep=reversed_time("bb_ca"),
    ),
    ZooCase(
        cls="T5FilmDecoder",
        family="Spectrogram Diffusion",
        modality="audio",
        config=dict(
            input_dims=8,
            targets_length=16,
            d_model=16,
            num_layers=2,
            num_heads=2,
            d_kv=8,
            d_ff=32,
        ),
        inputs=t5_film_inputs,
        latent="decoder_input_tokens",
        timestep="decoder_noise_time",
        timestep_range=1.0,  # the pipeline rescales the DDPM step to [0, 1)
    ),
    ZooCase(
        cls="MiniMaxMusic3RVQDepthDecoder",
        family="MiniMax Music 3",
        modality="audio",
        reason=(
            "It is MiniMax Music 3's autoregressive codebook decoder (a small causal language model with no "
            "timestep input), not the flow-matching denoiser, so there are no denoising steps to cache across."
        ),
    ),
]
