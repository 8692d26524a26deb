"""Real diffusers pipelines of the families smoothcache serves, built tiny, seeded and offline.

Every part comes from a config with seeded random weights; tokenizers are built in memory from small
vocabularies, so nothing is downloaded. ``save_pretrained`` then ``DiffusionPipeline.from_pretrained``
is the real loading path. The numbers follow diffusers' own pipeline tests; schedulers are configured
as the released checkpoints ship them. :data:`CALLS` holds each builder's call keyword arguments (a
few seconds or less on a CPU, guidance switched on) and :data:`OUTPUTS` what the call returns.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from smoothcache.reference.pipelines import randomize_zero_parameters, t5_tokenizer

if TYPE_CHECKING:
    from diffusers import (
        FluxPipeline,
        LTXPipeline,
        QwenImagePipeline,
        StableAudio3Pipeline,
        StableDiffusion3Pipeline,
        WanPipeline,
    )
    from transformers import CLIPTokenizer, GemmaTokenizer, Qwen2Tokenizer

#: Whole-word tokens of the in-memory BPE vocabularies: the prompts of tests and examples.
_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "and",
    "with",
    "in",
    "on",
    "by",
    "cat",
    "dog",
    "photo",
    "photograph",
    "painting",
    "squirrel",
    "eating",
    "burger",
    "dance",
    "monkey",
    "astronaut",
    "riding",
    "horse",
    "bad",
    "quality",
    "blurry",
    "low",
    "hammer",
    "hitting",
    "wooden",
    "surface",
    "piano",
    "rain",
]

#: Qwen-Image's prompt template, worded as the pipeline has it: these words are single tokens, so the
#: template's system part is the 34 tokens the pipeline drops, as with the real Qwen2.5 tokenizer.
_QWEN_TEMPLATE_WORDS = [
    "Describe",
    "the",
    "image",
    "by",
    "detailing",
    "the",
    "color",
    "shape",
    "size",
    "texture",
    "quantity",
    "text",
    "spatial",
    "relationships",
    "of",
    "the",
    "objects",
    "and",
    "background",
]

#: Qwen2.5-VL's special tokens, ``<|endoftext|>`` (padding) first.
_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: The T5 tokenizers' length limit, as released: the pipelines pad prompts to up to 512 tokens, and
#: tokenizing a prompt longer than the limit warns.
_T5_MAX_LENGTH = 512


def _whole_word_bpe(words: Iterable[Sequence[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Tokens and merges that join each word's symbols left to right into one token, so that a known
    word is a single token, as in a real vocabulary, and any other text falls back to its symbols.
    Longer words rank first: a shorter word's merges ("in") would otherwise split a longer one
    ("hitting") before its own merges complete."""
    tokens: dict[str, None] = {}
    merges: dict[tuple[str, str], None] = {}
    for symbols in sorted(words, key=len, reverse=True):
        for i in range(1, len(symbols)):
            left = "".join(symbols[:i])
            merges.setdefault((left, symbols[i]), None)
            tokens.setdefault(left + symbols[i], None)
    return list(tokens), list(merges)


def _byte_alphabet() -> list[str]:
    """The 256 characters that byte-level BPE (CLIP, Qwen2) maps bytes to, in a fixed order."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` from an in-memory byte-level BPE vocabulary; the special tokens come last, as
    in CLIP's vocabulary (the end token pads)."""
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    words, merges = _whole_word_bpe(list(word[:-1]) + [word[-1] + "</w>"] for word in _WORDS)
    vocab = alphabet + [character + "</w>" for character in alphabet] + words + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(dict.fromkeys(vocab))},
        merges=merges,
        model_max_length=model_max_length,
    )


def qwen2_tokenizer() -> Qwen2Tokenizer:
    """A ``Qwen2Tokenizer`` from an in-memory byte-level BPE vocabulary with Qwen2.5-VL's chat and vision
    special tokens; the image prompt template splits into the same tokens as with the real one."""
    from transformers import Qwen2Tokenizer

    alphabet = _byte_alphabet()
    words = ["system", "user", "assistant", "Describe"] + ["\u0120" + word for word in _WORDS + _QWEN_TEMPLATE_WORDS]
    tokens, merges = _whole_word_bpe(words)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(alphabet + tokens + list(_QWEN_SPECIALS)))}
    return Qwen2Tokenizer(vocab=vocab, merges=merges, extra_special_tokens=list(_QWEN_SPECIALS[1:]))


def gemma_tokenizer(model_max_length: int = 16) -> GemmaTokenizer:
    """A ``GemmaTokenizer`` (Stable Audio 3's T5Gemma) from an in-memory BPE vocabulary with byte fallback:
    Gemma's special tokens first, the 256 byte tokens, letters, digits and whole words; ``<bos>`` first,
    as Gemma's tokenizer adds it. Spaces become "\u2581" before BPE, so whole words carry it in front."""
    from transformers import GemmaTokenizer

    letters = list(string.ascii_letters + string.digits + "\u2581")
    tokens, merges = _whole_word_bpe([*_WORDS, *("\u2581" + word for word in _WORDS)])
    vocab = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{byte:02X}>" for byte in range(256)] + letters + tokens
    return GemmaTokenizer(
        vocab={token: i for i, token in enumerate(dict.fromkeys(vocab))},
        merges=merges,
        model_max_length=model_max_length,
        add_bos_token=True,
    )


def _t5_encoder(vocab_size: int, seed: int, d_model: int = 32, umt5: bool = False) -> torch.nn.Module:
    """A two-layer T5 (or UMT5, Wan's) encoder with ``d_model`` outputs."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    torch.manual_seed(seed)
    return model_class(
        config_class(
            vocab_size=vocab_size,
            d_model=d_model,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_decoder_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu" if umt5 else "relu",
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    ).eval()


def _clip_encoder(tokenizer: CLIPTokenizer, seed: int, hidden: int = 32, projection: bool = False) -> torch.nn.Module:
    """A two-layer CLIP text encoder for ``tokenizer`` (two layers: SD3 reads the penultimate one)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _autoencoder_kl(seed: int, latent_channels: int, scaling_factor: float, shift_factor: float) -> torch.nn.Module:
    """A two-level ``AutoencoderKL`` (8x fewer pixels per side in the real one, 2x here) without the
    quant convolutions, as the Flux and SD3 autoencoders."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    ).eval()


def _seeded_transformer(factory: Callable[[], torch.nn.Module], seed: int) -> torch.nn.Module:
    """``factory()`` under ``seed``, its all-zero parameters randomised: with zero-initialised gates and
    output layers a cached and an uncached block agree trivially, and a test comparing them proves nothing."""
    torch.manual_seed(seed)
    model = factory()
    randomize_zero_parameters(model, seed)
    return model.eval()


def flux_pipeline(seed: int = 0, guidance_distilled: bool = True) -> FluxPipeline:
    """A ``FluxPipeline``: CLIP (pooled) and T5 text encoders, ``AutoencoderKL`` with 4 latent channels,
    a ``FluxTransformer2DModel`` of 2 double and 2 single blocks (width 32). ``guidance_distilled``:
    FLUX.1-dev (guidance embedding, dynamic shifting), otherwise FLUX.1-schnell (neither)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer = clip_tokenizer()
    tokenizer_2 = t5_tokenizer(_T5_MAX_LENGTH)
    transformer = _seeded_transformer(
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=guidance_distilled,
            axes_dims_rope=(4, 6, 6),
        ),
        seed,
    )
    if guidance_distilled:
        scheduler = FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    return FluxPipeline(
        scheduler=scheduler,
        vae=_autoencoder_kl(seed + 1, latent_channels=4, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=_clip_encoder(tokenizer, seed + 2),
        tokenizer=tokenizer,
        text_encoder_2=_t5_encoder(len(tokenizer_2), seed + 3),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def sd3_pipeline(seed: int = 0) -> StableDiffusion3Pipeline:
    """A ``StableDiffusion3Pipeline``: two CLIP-with-projection encoders of different widths (16 and 24,
    as CLIP-L and CLIP-G differ; pooled 40), T5 (width 48, the joint attention width), ``AutoencoderKL``
    with 4 latent channels, an ``SD3Transformer2DModel`` of 2 blocks (width 32, patch 2, RMS QK norm as
    SD3.5), ``FlowMatchEulerDiscreteScheduler(shift=3.0)``. The default size is 32x32 pixels."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer, tokenizer_2, tokenizer_3 = clip_tokenizer(), clip_tokenizer(), t5_tokenizer(_T5_MAX_LENGTH)
    transformer = _seeded_transformer(
        lambda: SD3Transformer2DModel(
            sample_size=16,
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=48,
            pooled_projection_dim=40,
            pos_embed_max_size=16,
            qk_norm="rms_norm",
        ),
        seed,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_autoencoder_kl(seed + 1, latent_channels=4, scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=_clip_encoder(tokenizer, seed + 2, hidden=16, projection=True),
        tokenizer=tokenizer,
        text_encoder_2=_clip_encoder(tokenizer_2, seed + 3, hidden=24, projection=True),
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(len(tokenizer_3), seed + 4, d_model=48),
        tokenizer_3=tokenizer_3,
    )


def _wan_transformer(seed: int) -> torch.nn.Module:
    """Wan's transformer, tiny; a function because Wan 2.2 A14B has two (the experts)."""
    from diffusers import WanTransformer3DModel

    return _seeded_transformer(
        lambda: WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        ),
        seed,
    )


def wan_pipeline(seed: int = 0, two_experts: bool = False) -> WanPipeline:
    """A ``WanPipeline``: UMT5 encoder, ``AutoencoderKLWan`` (8x spatial, 4x temporal, 16 latent channels),
    a ``WanTransformer3DModel`` of 2 blocks (width 24), UniPC with flow sigmas (shift 3) as the released
    checkpoints. ``two_experts``: Wan 2.2 A14B, a second transformer (other weights) for the low-noise
    steps and ``boundary_ratio=0.875``; with 4 steps the timesteps are 999, 900 (``transformer``) and
    750, 500 (``transformer_2``)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline

    tokenizer = t5_tokenizer(_T5_MAX_LENGTH)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(len(tokenizer), seed + 2, umt5=True),
        vae=vae,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
        transformer=_wan_transformer(seed),
        transformer_2=_wan_transformer(seed + 3) if two_experts else None,
        boundary_ratio=0.875 if two_experts else None,
    )


def stable_audio3_pipeline(seed: int = 0) -> StableAudio3Pipeline:
    """A ``StableAudio3Pipeline`` as the non-distilled base checkpoint (deterministic Euler, guidance by
    ``guidance_scale``): T5Gemma encoder and Gemma tokenizer, ``AutoencoderSAME`` (stereo, 64 Hz, 4x
    down), the duration embedder, a ``StableAudio3DiTModel`` of 2 blocks (width 32, differential
    attention as released); conditioning width 16 throughout."""
    from diffusers import AutoencoderSAME, FlowMatchEulerDiscreteScheduler, StableAudio3DiTModel, StableAudio3Pipeline
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder
    from transformers import T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    width = 16
    tokenizer = gemma_tokenizer()
    transformer = _seeded_transformer(
        lambda: StableAudio3DiTModel(
            io_channels=8,
            patch_size=1,
            embed_dim=32,
            depth=2,
            num_heads=4,
            cond_token_dim=width,
            global_cond_dim=width,
            local_add_cond_dim=5,
            timestep_features_dim=16,
            ff_mult=2,
            num_memory_tokens=3,
        ),
        seed,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderSAME(
        audio_channels=2,
        patch_size=2,
        encoder_channels=8,
        encoder_c_mults=(2,),
        encoder_strides=(2,),
        encoder_transformer_depths=(1,),
        latent_dim=8,
        dim_heads=4,
        ff_mult=2,
        sampling_rate=64,
    ).eval()
    # SAME zero-initialises its attention and feed-forward outputs; untrained, its decoder would ignore the latents
    randomize_zero_parameters(vae, seed + 1, std=0.25)
    module = T5GemmaModuleConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        sliding_window=64,
        layer_types=["full_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    ).to_dict()
    torch.manual_seed(seed + 2)
    text_encoder = T5GemmaEncoderModel(T5GemmaConfig(encoder=module, decoder=module, is_encoder_decoder=False)).eval()
    torch.manual_seed(seed + 3)
    duration_embedder = StableAudio3DurationEmbedder(output_dim=width, fourier_dim=16)
    return StableAudio3Pipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        duration_embedder=duration_embedder,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0, stochastic_sampling=False),
    )


def ltx_pipeline(seed: int = 0) -> LTXPipeline:
    """An ``LTXPipeline``: T5 encoder, ``AutoencoderKLLTXVideo`` (8 latent channels, 4x spatial and
    temporal), an ``LTXVideoTransformer3DModel`` of 2 blocks (width 32, patch 1), the flow-matching
    scheduler with LTX-Video's dynamic shifting and terminal shift."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    tokenizer = t5_tokenizer(_T5_MAX_LENGTH)
    transformer = _seeded_transformer(
        lambda: LTXVideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=2,
            caption_channels=32,
        ),
        seed,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    return LTXPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=_t5_encoder(len(tokenizer), seed + 2),
        tokenizer=tokenizer,
        transformer=transformer,
    )


def qwen_image_pipeline(seed: int = 0) -> QwenImagePipeline:
    """A ``QwenImagePipeline``: Qwen2.5-VL (text width 16, a two-block vision tower) and a Qwen2 BPE
    tokenizer, ``AutoencoderKLQwenImage`` (4 latent channels, 4x spatial), a
    ``QwenImageTransformer2DModel`` of 2 blocks (width 48), the flow-matching scheduler with Qwen-Image's
    exponential dynamic shifting."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = qwen2_tokenizer()
    transformer = _seeded_transformer(
        lambda: QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=16,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        ),
        seed,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ).eval()
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(seed + 2)
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": 16,
                "intermediate_size": 16,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "rope_theta": 1000000.0,
                "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                "bos_token_id": ids("<|endoftext|>"),
                "eos_token_id": ids("<|im_end|>"),
                "pad_token_id": ids("<|endoftext|>"),
            },
            vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
            vocab_size=len(tokenizer),
            hidden_size=16,
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=0.9,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )
    return QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)


#: The builders by name; ``flux_schnell`` and ``wan22`` are the other configurations of two of them.
BUILDERS: dict[str, Callable[..., Any]] = {
    "flux": flux_pipeline,
    "flux_schnell": functools.partial(flux_pipeline, guidance_distilled=False),
    "sd3": sd3_pipeline,
    "wan": wan_pipeline,
    "wan22": functools.partial(wan_pipeline, two_experts=True),
    "stable_audio3": stable_audio3_pipeline,
    "ltx": ltx_pipeline,
    "qwen_image": qwen_image_pipeline,
}

#: Call keyword arguments besides prompt, steps, generator and output type: small sizes, short text,
#: guidance on as each model is used (Flux-dev's distilled guidance, true CFG for Qwen-Image).
CALLS: dict[str, dict[str, Any]] = {
    "flux": dict(height=32, width=32, guidance_scale=3.5, max_sequence_length=16),
    "flux_schnell": dict(height=32, width=32, guidance_scale=0.0, max_sequence_length=16),
    "sd3": dict(height=32, width=32, guidance_scale=7.0, max_sequence_length=16),
    "wan": dict(height=32, width=32, num_frames=9, guidance_scale=5.0, max_sequence_length=16),
    "wan22": dict(height=32, width=32, num_frames=9, guidance_scale=4.0, guidance_scale_2=3.0, max_sequence_length=16),
    "stable_audio3": dict(duration=1.0, guidance_scale=4.0),
    "ltx": dict(height=32, width=32, num_frames=9, guidance_scale=3.0, max_sequence_length=16),
    "qwen_image": dict(height=32, width=32, negative_prompt=" ", true_cfg_scale=4.0),
}


class Output(NamedTuple):
    """What a call with ``output_type="pt"`` returns: the output's attribute, its layout (B batch, C
    channels, F frames, H, W pixels, S samples) and, for :data:`CALLS` and one prompt, its shape."""

    attribute: str
    layout: str
    shape: tuple[int, ...]


OUTPUTS: dict[str, Output] = {
    "flux": Output("images", "BCHW", (1, 3, 32, 32)),
    "flux_schnell": Output("images", "BCHW", (1, 3, 32, 32)),
    "sd3": Output("images", "BCHW", (1, 3, 32, 32)),
    "wan": Output("frames", "BFCHW", (1, 9, 3, 32, 32)),
    "wan22": Output("frames", "BFCHW", (1, 9, 3, 32, 32)),
    "stable_audio3": Output("audios", "BCS", (1, 2, 64)),
    "ltx": Output("frames", "BFCHW", (1, 9, 3, 32, 32)),
    "qwen_image": Output("images", "BCHW", (1, 3, 32, 32)),
}


def output(name: str, result: Any) -> torch.Tensor:
    """The generated tensor in what the pipeline built by ``BUILDERS[name]`` returned with
    ``output_type="pt"``, laid out as ``OUTPUTS[name].layout`` says."""
    return getattr(result, OUTPUTS[name].attribute)


def call(name: str, pipe: Any, seed: int = 0, steps: int = 4, prompt: str = "a cat", **overrides: Any) -> torch.Tensor:
    """Run ``pipe`` (built by ``BUILDERS[name]`` or loaded from its saved folder) with :data:`CALLS`
    (``overrides`` replace or add arguments) and a seeded generator; return :func:`output`."""
    result = pipe(
        prompt=prompt,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        **{**CALLS[name], **overrides},
    )
    return output(name, result)
