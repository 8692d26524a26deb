"""A trained FLUX-architecture reference: a diffusers ``FluxTransformer2DModel`` (double- and single-stream
blocks, rotary positions, no guidance embedding, as FLUX.1-schnell) that draws 32x32 compositions of two
coloured handwritten digits from prompts such as "a small red 3 above a large blue 7 on a striped
background", through a real ``FluxPipeline``.

The digits DiT no longer separates caching methods (57 dB at half the MACs); this model is built to be
harder on a cache: two objects whose digit, colour and size are bound by word order, textured
backgrounds, flow matching over 28 steps with true classifier-free guidance (two transformer calls per
step, as ``FluxPipeline`` runs it when ``negative_prompt`` and ``true_cfg_scale`` are given). Parts:

- text: a tiny CLIP (pooled) and a tiny T5, frozen seeded random weights (:mod:`coloured_digits`);
- an ``AutoencoderKL`` (2x per side, 4 latent channels, no quant convolutions, as FLUX's) trained here;
- the transformer, trained here with flow matching on latents of procedural scenes;
- :class:`SceneChecker`, a small CNN trained on rendered scenes, which reads the prompt's attributes
  back from a generated image (is it trained?).

Weights: ``reference/weights/flux-digits/`` (a ``save_pretrained`` pipeline folder) and
``reference/weights/flux-digits-checker.safetensors``; training: ``scripts/train_flux_digits.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from . import coloured_digits as scenes_base

WEIGHTS = Path(__file__).parent / "weights"
PIPELINE_DIR = WEIGHTS / "flux-digits"
CHECKER_WEIGHTS = WEIGHTS / "flux-digits-checker.safetensors"

SIDE = 32
#: Relations between the first- and second-named digit; the first two stack the digits vertically.
RELATIONS = ("above", "below", "left of", "right of")
SIZES = ("small", "large")
#: Side of a digit in pixels, drawn uniformly in these ranges (a half of the canvas is 16 pixels).
SIZE_RANGES = ((9.5, 11.0), (13.5, 15.5))
#: T5 tokens per prompt (the longest prompt is 14 words and the end token): pass it to ``FluxPipeline``.
MAX_SEQUENCE_LENGTH = 16
#: The sampler the model is scored and calibrated at: ``FluxPipeline``'s default step count, true CFG.
DEFAULT_STEPS = 28
DEFAULT_GUIDANCE = 4.0
#: Share of training prompts replaced by the empty prompt, the negative prompt of guidance.
PROMPT_DROPOUT = 0.1
#: Seeds and relative-position scale of the frozen text encoders. The T5 seed was chosen among 2-7 by a
#: linear probe (colour of the first digit read from the first digit's token: 0.97; at seed 2, 0.67).
CLIP_SEED = 1
T5_SEED = 7
T5_LOCALITY = 10.0
#: The flow shift at this image size (FLUX.1-dev's dynamic shifting reaches max_shift at 64 tokens).
SHIFT_MU = 1.15


@dataclass
class ImageScenes:
    """A batch of two-digit scenes; index 0 of the pair is the digit named first in the prompt.

    ``relation [N]`` indexes :data:`RELATIONS`, ``background [N]`` :data:`coloured_digits.BACKGROUNDS`;
    ``digits``, ``colours``, ``sizes`` and ``glyph`` (index into the split's glyphs) are ``[N, 2]``;
    ``boxes [N, 2, 3]`` holds each digit's top, left and side in pixels, ``phase [N, 2]`` the texture's
    offset."""

    relation: Tensor
    background: Tensor
    phase: Tensor
    digits: Tensor
    colours: Tensor
    sizes: Tensor
    glyph: Tensor
    boxes: Tensor

    def __len__(self) -> int:
        return len(self.relation)

    def __getitem__(self, index) -> ImageScenes:
        return ImageScenes(**{field.name: getattr(self, field.name)[index] for field in fields(self)})

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """The fields as a flat dict of tensors (for safetensors)."""
        return {prefix + field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], prefix: str = "") -> ImageScenes:
        return cls(**{field.name: tensors[prefix + field.name] for field in fields(cls)})


def first_in_region_a(relation: Tensor) -> Tensor:
    """Whether the first-named digit is in region A (the top half for above/below, the left half
    otherwise): true for "above" and "left of"."""
    return (relation == RELATIONS.index("above")) | (relation == RELATIONS.index("left of"))


def vertical(relation: Tensor) -> Tensor:
    """Whether the two digits are stacked (above / below) rather than side by side."""
    return relation < 2


def sample_scenes(count: int, generator: torch.Generator, split: str = "train") -> ImageScenes:
    """``count`` random scenes: every attribute uniform and independent; each digit gets a random
    handwritten glyph of its class from ``split`` and a random box inside its half of the canvas."""
    _, labels = scenes_base.glyphs(split)
    relation = torch.randint(0, len(RELATIONS), (count,), generator=generator)
    background = torch.randint(0, len(scenes_base.BACKGROUNDS), (count,), generator=generator)
    digits = torch.randint(0, scenes_base.NUM_DIGITS, (count, 2), generator=generator)
    colours = torch.randint(0, len(scenes_base.COLOUR_NAMES), (count, 2), generator=generator)
    sizes = torch.randint(0, len(SIZES), (count, 2), generator=generator)
    # a random glyph of each digit's class: rank a uniform draw among the glyphs of that class
    glyph = torch.empty(count, 2, dtype=torch.long)
    for digit in range(scenes_base.NUM_DIGITS):
        members = torch.nonzero(labels == digit)[:, 0]
        chosen = digits == digit
        glyph[chosen] = members[torch.randint(0, len(members), (int(chosen.sum()),), generator=generator)]
    low = torch.tensor([r[0] for r in SIZE_RANGES])[sizes]
    high = torch.tensor([r[1] for r in SIZE_RANGES])[sizes]
    side = low + (high - low) * torch.rand(count, 2, generator=generator)
    # region of each digit: 0 = A (top or left half), 1 = B; the first-named digit's is set by the relation
    region = torch.stack([(~first_in_region_a(relation)).long(), first_in_region_a(relation).long()], dim=1)
    half = SIDE / 2
    along = region * half + (half - side) * torch.rand(count, 2, generator=generator)  # inside its half
    across = 2.0 + (SIDE - 4.0 - side) * torch.rand(count, 2, generator=generator)  # 2 px margin
    stacked = vertical(relation)[:, None]
    top = torch.where(stacked, along, across)
    left = torch.where(stacked, across, along)
    boxes = torch.stack([top, left, side], dim=-1)
    phase = scenes_base.background_phases(count, generator)
    return ImageScenes(relation, background, phase, digits, colours, sizes, glyph, boxes)


def render_scenes(scenes: ImageScenes, split: str = "train") -> Tensor:
    """The pictures ``[N, 3, 32, 32]`` in [0, 1] of ``scenes`` (glyph indices refer to ``split``)."""
    ink, _ = scenes_base.glyphs(split)
    canvas = scenes_base.backgrounds(scenes.background, scenes.phase, SIDE)
    for slot in range(2):
        box = scenes.boxes[:, slot].float()
        alpha = scenes_base.glyph_alpha(ink[scenes.glyph[:, slot]], box[:, 1], box[:, 0], box[:, 2], SIDE)
        canvas = scenes_base.paint(canvas, alpha, scenes_base.colour_values(scenes.colours[:, slot]))
    return canvas


def scene_prompts(scenes: ImageScenes) -> list[str]:
    """One prompt per scene: "a {size} {colour} {digit} {relation} a {size} {colour} {digit} on a
    {background} background"."""
    names = scenes_base.COLOUR_NAMES
    prompts = []
    for i in range(len(scenes)):
        objects = [f"a {SIZES[scenes.sizes[i, k]]} {names[scenes.colours[i, k]]} {int(scenes.digits[i, k])}" for k in range(2)]
        background = scenes_base.BACKGROUNDS[scenes.background[i]]
        prompts.append(f"{objects[0]} {RELATIONS[scenes.relation[i]]} {objects[1]} on a {background} background")
    return prompts


# --- the pipeline ---------------------------------------------------------------------------------------


def transformer_config() -> dict:
    """2 double-stream and 4 single-stream blocks of width 128 (4 heads of 32), RoPE over (frame, row,
    column) with (8, 12, 12) of the 32 head dimensions, 4x4 latent channels per token (FLUX packs 2x2
    latent pixels), no guidance embedding."""
    return dict(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=4,
        attention_head_dim=32,
        num_attention_heads=4,
        joint_attention_dim=128,
        pooled_projection_dim=64,
        guidance_embeds=False,
        axes_dims_rope=(8, 12, 12),
    )


def vae_config() -> dict:
    """A two-level ``AutoencoderKL``: 32x32x3 pixels to 16x16x4 latents; no quant convolutions, as FLUX's.
    ``scaling_factor`` and ``shift_factor`` are set from the training data once it is trained."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=SIDE,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=1.0,
        shift_factor=0.0,
    )


def scheduler():
    """``FlowMatchEulerDiscreteScheduler`` with FLUX.1-dev's dynamic shifting, its sequence-length range
    scaled to this model: 64 image tokens give ``mu = 1.15``, a shift of 3.16 (FLUX.1-dev at 1024x1024)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=SHIFT_MU,
        base_image_seq_len=16,
        max_image_seq_len=64,
    )


def text_encoder_2(vocab_size: int):
    """The frozen T5 encoder: 4 layers of width 128, relative-position biases scaled by :data:`T5_LOCALITY`."""
    return scenes_base.t5_text_encoder(vocab_size, T5_SEED, width=128, layers=4, locality=T5_LOCALITY)


def build_pipeline(transformer=None, vae=None, seed: int = 0):
    """A ``FluxPipeline`` of this reference's parts. The text encoders are always the frozen seeded ones
    (:data:`CLIP_SEED`, :data:`T5_SEED`); ``transformer`` and ``vae`` default to fresh, untrained ones of
    the reference configs, seeded by ``seed``."""
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel

    tokenizer = scenes_base.clip_tokenizer()
    tokenizer_2 = scenes_base.t5_tokenizer()
    if transformer is None:
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(**transformer_config())
    if vae is None:
        torch.manual_seed(seed)
        vae = AutoencoderKL(**vae_config())
    return FluxPipeline(
        scheduler=scheduler(),
        vae=vae,
        text_encoder=scenes_base.clip_text_encoder(tokenizer, CLIP_SEED, width=64),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2(len(tokenizer_2)),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def load_pipeline(path: Path = PIPELINE_DIR):
    """The shipped ``FluxPipeline`` (``FluxPipeline.from_pretrained`` of its folder), CPU, float32."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, seed: int = 0, **kwargs) -> Tensor:
    """Images ``[N, 3, 32, 32]`` in [0, 1], one per prompt, through ``pipe(...)``: the empty negative
    prompt with ``true_cfg_scale=guidance`` (``guidance <= 1``: no guidance, one call per step), and one
    generator per prompt (seeds ``seed``, ``seed + 1``, ...), so that an image does not depend on the batch."""
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    guided = {"negative_prompt": [""] * len(prompts), "true_cfg_scale": guidance} if guidance > 1 else {}
    output = pipe(
        prompt=prompts,
        height=SIDE,
        width=SIDE,
        num_inference_steps=steps,
        generator=generators,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
        output_type="pt",
        **guided,
        **kwargs,
    )
    return output.images.float().cpu()


# --- is it trained? ---------------------------------------------------------------------------------------

#: The checker's heads and their classes: the layout, then digit, colour and size of region A (top or
#: left half) and region B, then the background.
CHECKER_HEADS = {
    "layout": 2,
    "digit_a": scenes_base.NUM_DIGITS,
    "digit_b": scenes_base.NUM_DIGITS,
    "colour_a": len(scenes_base.COLOUR_NAMES),
    "colour_b": len(scenes_base.COLOUR_NAMES),
    "size_a": len(SIZES),
    "size_b": len(SIZES),
    "background": len(scenes_base.BACKGROUNDS),
}


class SceneChecker(nn.Module):
    """A small CNN on ``[N, 3, 32, 32]`` pictures in [0, 1] that reads a two-digit scene region by region
    (:data:`CHECKER_HEADS`); trained on rendered scenes only, it scores generated images against their
    prompts (:func:`scene_accuracy`)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()

        def stage(channels_in: int, channels_out: int) -> list[nn.Module]:
            return [
                nn.Conv2d(channels_in, channels_out, 3, padding=1),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(),
                nn.Conv2d(channels_out, channels_out, 3, padding=1),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]

        self.body = nn.Sequential(
            *stage(3, width),
            *stage(width, 2 * width),
            *stage(2 * width, 4 * width),
            nn.Flatten(),
            nn.Linear(4 * width * (SIDE // 8) ** 2, 256),
            nn.ReLU(),
        )
        self.head = nn.Linear(256, sum(CHECKER_HEADS.values()))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Logits per head of :data:`CHECKER_HEADS`."""
        logits = self.head(self.body(images * 2.0 - 1.0))
        return dict(zip(CHECKER_HEADS, logits.split(list(CHECKER_HEADS.values()), dim=1), strict=True))


def checker_targets(scenes: ImageScenes) -> dict[str, Tensor]:
    """What the checker should read from each scene: its heads' classes, region by region."""
    first_a = first_in_region_a(scenes.relation)
    in_a = torch.where(first_a, 0, 1)  # which named digit is in region A
    rows = torch.arange(len(scenes))
    targets = {"layout": (~vertical(scenes.relation)).long(), "background": scenes.background}
    for name, values in (("digit", scenes.digits), ("colour", scenes.colours), ("size", scenes.sizes)):
        targets[f"{name}_a"] = values[rows, in_a]
        targets[f"{name}_b"] = values[rows, 1 - in_a]
    return targets


def load_checker(path: Path = CHECKER_WEIGHTS) -> SceneChecker:
    """The shipped, trained :class:`SceneChecker`, eval mode."""
    from safetensors.torch import load_file

    checker = SceneChecker()
    checker.load_state_dict(load_file(path))
    return checker.eval()


def scene_accuracy(images: Tensor, scenes: ImageScenes, checker: SceneChecker | None = None) -> dict[str, float]:
    """How much of each prompt the checker reads back from ``images [N, 3, 32, 32]`` in [0, 1]: accuracy
    of the layout (the relation's axis), of the digits, colours and sizes (both named digits, each read
    in the region its relation puts it), of the background, and ``all``: the share of images with every
    attribute right."""
    if checker is None:
        checker = load_checker()
    with torch.no_grad():
        logits = checker(images.float().cpu())
    targets = checker_targets(scenes)
    right = {name: logits[name].argmax(dim=1) == targets[name] for name in CHECKER_HEADS}
    result = {
        "layout": right["layout"].float().mean().item(),
        "digit": torch.cat([right["digit_a"], right["digit_b"]]).float().mean().item(),
        "colour": torch.cat([right["colour_a"], right["colour_b"]]).float().mean().item(),
        "size": torch.cat([right["size_a"], right["size_b"]]).float().mean().item(),
        "background": right["background"].float().mean().item(),
    }
    result["all"] = torch.stack(list(right.values())).all(dim=0).float().mean().item()
    return result
