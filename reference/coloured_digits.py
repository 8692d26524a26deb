"""Coloured digit scenes: the procedural pictures, the prompt vocabulary and the offline text encoders
shared by the FLUX reference (:mod:`flux_digits`, two digits per image) and the Wan reference
(:mod:`wan_digits`, one moving digit per video).

A scene is scikit-learn's handwritten 8x8 digits, scaled and placed at sub-pixel positions, painted in a
named colour over a named dark background (plain, striped or checkered). The textures and the sharp
coloured edges are there on purpose: a cache that drifts shows up in them, where it would vanish in a
blank background. Every random choice comes from a ``torch.Generator``, so a set is the same on every
machine. Text goes through real ``transformers`` encoders (CLIP, T5, UMT5) built from tiny configs with
frozen, seeded random weights, behind tokenizers built in memory from this vocabulary: prompts only need
distinct, consistent embeddings, and the pipelines encode them exactly as the released ones do.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.nn import functional as F

from .digits import load_digits_8

#: Colour names and their RGB values in [0, 1]: saturated and light, so they stand out on every background.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.16, 0.12),
    "green": (0.16, 0.80, 0.22),
    "blue": (0.22, 0.42, 1.00),
    "yellow": (0.96, 0.86, 0.12),
    "white": (0.96, 0.96, 0.96),
}
COLOUR_NAMES = tuple(COLOURS)
#: Background names: two plain ones and two textures (2-pixel stripes, 4-pixel checks, random phase).
BACKGROUNDS = ("black", "gray", "striped", "checkered")
#: Grey levels of the backgrounds: plain black, plain gray, and the two levels of the textures.
BLACK_LEVEL, GRAY_LEVEL, TEXTURE_DARK, TEXTURE_LIGHT = 0.03, 0.34, 0.06, 0.30
NUM_DIGITS = 10

#: Every word of every prompt; each is one token in both tokenizers.
WORDS = (
    ("a", "small", "large", "above", "below", "left", "right", "of", "on", "background")
    + ("moving", "up", "down", "and", "turning")
    + COLOUR_NAMES
    + BACKGROUNDS
    + tuple(str(digit) for digit in range(NUM_DIGITS))
)
#: The T5 / UMT5 pieces beyond the words: lowercase letters, digits and punctuation, for any other text.
_T5_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"


def glyphs(split: str) -> tuple[Tensor, Tensor]:
    """The handwritten digits of ``split`` ("train" or "test", the shared split of
    :func:`digits.load_digits_8`) as ink ``[N, 8, 8]`` in [0, 1] and labels ``[N]``."""
    images, labels = load_digits_8(split)
    return (images[:, 0] + 1.0) / 2.0, labels


def background_phases(count: int, generator: torch.Generator) -> Tensor:
    """Random texture phases ``[count, 2]`` (row, column offsets in pixels) for :func:`backgrounds`."""
    return torch.randint(0, 8, (count, 2), generator=generator)


def backgrounds(kinds: Tensor, phase: Tensor, side: int) -> Tensor:
    """Backgrounds ``[N, 3, side, side]`` of the given kinds (indices into :data:`BACKGROUNDS`), grey;
    the textures (horizontal stripes 2 pixels wide, checks of 4 pixels) shifted by ``phase [N, 2]``."""
    count = len(kinds)
    rows = torch.arange(side)[None, :, None] + phase[:, 0, None, None]
    cols = torch.arange(side)[None, None, :] + phase[:, 1, None, None]
    stripes = ((rows // 2) % 2).expand(count, side, side)
    checks = ((rows // 4 + cols // 4) % 2).expand(count, side, side)
    texture_levels = torch.tensor([TEXTURE_DARK, TEXTURE_LIGHT])
    levels = torch.stack(
        [
            torch.full((count, side, side), BLACK_LEVEL),
            torch.full((count, side, side), GRAY_LEVEL),
            texture_levels[stripes],
            texture_levels[checks],
        ]
    )
    chosen = levels[kinds, torch.arange(count)]
    return chosen[:, None].expand(count, 3, side, side).clone()


def glyph_alpha(ink: Tensor, left: Tensor, top: Tensor, size: Tensor, side: int) -> Tensor:
    """Coverage ``[N, 1, side, side]`` in [0, 1] of each 8x8 glyph ``ink [N, 8, 8]`` drawn as a
    ``size x size`` square whose top-left corner is at ``(top, left)`` pixels (floats: sub-pixel
    positions and sizes, sampled bilinearly), on a ``side x side`` canvas."""
    scale = side / size
    zeros = torch.zeros_like(size)
    theta = torch.stack(
        [
            torch.stack([scale, zeros, (side - 2 * left) / size - 1], dim=-1),
            torch.stack([zeros, scale, (side - 2 * top) / size - 1], dim=-1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta.float(), [len(ink), 1, side, side], align_corners=False)
    return F.grid_sample(ink[:, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def paint(canvas: Tensor, alpha: Tensor, colour: Tensor) -> Tensor:
    """``canvas [N, 3, H, W]`` with ``colour [N, 3]`` laid over it where ``alpha [N, 1, H, W]`` covers it."""
    return canvas * (1 - alpha) + colour[:, :, None, None] * alpha


def colour_values(indices: Tensor) -> Tensor:
    """RGB ``[..., 3]`` of colour indices into :data:`COLOUR_NAMES`."""
    return torch.tensor(list(COLOURS.values()))[indices]


def to_model_range(images: Tensor) -> Tensor:
    """[0, 1] pictures to the autoencoders' [-1, 1]."""
    return images * 2.0 - 1.0


def from_model_range(images: Tensor) -> Tensor:
    """[-1, 1] autoencoder output to [0, 1] pictures, clipped."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


# --- offline tokenizers and frozen random text encoders ----------------------------------------------


def t5_tokenizer(model_max_length: int = 512):
    """A ``T5Tokenizer`` (unigram) from an in-memory vocabulary: every word of :data:`WORDS` is one piece,
    anything else falls back to characters. Used by FLUX's second encoder (T5) and Wan's (UMT5)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + word, -4.0) for word in WORDS]
    pieces += [(character, -8.0) for character in _T5_CHARACTERS if ("\u2581" + character) not in dict(pieces)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def _byte_level_alphabet() -> list[str]:
    """The 256 characters byte-level BPE maps bytes to (CLIP's tokenizer), in a fixed order."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _word_merges(words: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """BPE tokens and merges that build each word (with CLIP's end-of-word mark on its last character)
    into one token, from its end: every merge joins a character to a word ending, so a merge can only
    apply at the end of a word, merges of different words never compete, and the order of the merges
    does not matter."""
    tokens: dict[str, None] = {}
    merges: dict[tuple[str, str], None] = {}
    for word in words:
        ending = word[-1] + "</w>"
        for character in reversed(word[:-1]):
            merges.setdefault((character, ending), None)
            ending = character + ending
            tokens.setdefault(ending, None)
    return list(tokens), list(merges)


def clip_tokenizer(model_max_length: int = 77):
    """A ``CLIPTokenizer`` (byte-level BPE) from an in-memory vocabulary in which each word of
    :data:`WORDS` is one token; the start and end tokens come last, as in CLIP's, and the end token pads."""
    from transformers import CLIPTokenizer

    alphabet = _byte_level_alphabet()
    words, merges = _word_merges(WORDS)
    tokens = alphabet + [character + "</w>" for character in alphabet] + words + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def clip_text_encoder(tokenizer, seed: int, width: int = 64):
    """A two-layer ``CLIPTextModel`` (FLUX reads its pooled output) with seeded random weights, frozen."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=width,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval().requires_grad_(False)


def t5_text_encoder(vocab_size: int, seed: int, width: int = 64, layers: int = 2, umt5: bool = False, locality: float = 1.0):
    """A ``T5EncoderModel`` (FLUX) or ``UMT5EncoderModel`` (Wan) with seeded random weights, frozen.

    T5 knows word order only through its learnt relative-position biases; in a random encoder they are
    noise of a small scale, and "a red 3 above a blue 7" would encode almost as "a blue 3 above a red 7".
    ``locality`` multiplies the random bias table: larger values make each head attend to fixed relative
    offsets, so every word's vector carries its neighbours (which colour goes with which digit)."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    torch.manual_seed(seed)
    model = model_class(
        config_class(
            vocab_size=vocab_size,
            d_model=width,
            d_kv=width // 4,
            d_ff=2 * width,
            num_layers=layers,
            num_decoder_layers=1,
            num_heads=4,
            relative_attention_num_buckets=16,
            relative_attention_max_distance=32,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu" if umt5 else "relu",
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    if locality != 1.0:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "relative_attention_bias" in name:
                    parameter.mul_(locality)
    return model.eval().requires_grad_(False)
