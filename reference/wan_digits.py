"""A trained Wan-architecture reference: a diffusers ``WanTransformer3DModel`` text-to-video model that
draws 13-frame 32x32 clips of a coloured handwritten digit moving across a background and, when asked,
changing colour on the way ("a red 3 moving left and turning blue on a striped background"), through a
real ``WanPipeline``.

Built to be harder on a cache than the moving-digits STDiT3: motion, a colour that changes over the
clip, textured backgrounds, Wan's UniPC flow sampler over 30 steps with classifier-free guidance (two
transformer calls per step, as ``WanPipeline`` runs it). Parts:

- text: a tiny UMT5 encoder, frozen seeded random weights (:mod:`coloured_digits`), padded and masked
  as ``WanPipeline`` does;
- an ``AutoencoderKLWan`` (4x per side, 4x in time: 13 frames -> 4 latent frames, 16 channels) trained
  here; Wan's causal video autoencoder wants 4k + 1 frames;
- the transformer, trained here with flow matching on latents of procedural clips;
- :class:`ClipChecker`, a small CNN trained on rendered clips, which reads digit, start and end colour,
  direction and background back from a generated clip (is it trained?).

Weights: ``reference/weights/wan-digits/`` (a ``save_pretrained`` pipeline folder) and
``reference/weights/wan-digits-checker.safetensors``; training: ``scripts/train_wan_digits.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from . import coloured_digits as scenes_base

WEIGHTS = Path(__file__).parent / "weights"
PIPELINE_DIR = WEIGHTS / "wan-digits"
CHECKER_WEIGHTS = WEIGHTS / "wan-digits-checker.safetensors"

SIDE = 32
FRAMES = 13
#: Directions of motion and their (row, column) step in pixels per frame.
DIRECTIONS = ("left", "right", "up", "down")
VELOCITIES = ((0.0, -1.0), (0.0, 1.0), (-1.0, 0.0), (1.0, 0.0))
#: Side of the digit in pixels, uniform in this range.
SIZE_RANGE = (11.0, 14.0)
#: Share of clips whose digit changes colour (the rest keep theirs, and their prompt says nothing of it).
TURNING_SHARE = 0.5
#: UMT5 tokens per prompt (the longest prompt is 12 words and the end token): pass it to ``WanPipeline``.
MAX_SEQUENCE_LENGTH = 16
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 5.0
PROMPT_DROPOUT = 0.1
#: Seed and relative-position scale of the frozen UMT5 encoder (a linear probe reads the start colour
#: from the digit's token at 0.99 and the end colour at 0.96).
UMT5_SEED = 1
UMT5_LOCALITY = 8.0
#: Wan 2.1's flow shift at 480p, used by the sampler and by the training noise levels.
FLOW_SHIFT = 3.0


@dataclass
class VideoScenes:
    """A batch of clips: ``digit``, ``direction`` (index into :data:`DIRECTIONS`), ``background`` and
    ``glyph`` (index into the split's glyphs) ``[N]``; ``colours [N, 2]`` the start and end colour;
    ``start [N, 2]`` the digit's first top-left corner and ``size [N]`` its side, in pixels; ``phase
    [N, 2]`` the texture's offset."""

    digit: Tensor
    colours: Tensor
    direction: Tensor
    background: Tensor
    phase: Tensor
    glyph: Tensor
    start: Tensor
    size: Tensor

    def __len__(self) -> int:
        return len(self.digit)

    def __getitem__(self, index) -> VideoScenes:
        return VideoScenes(**{field.name: getattr(self, field.name)[index] for field in fields(self)})

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """The fields as a flat dict of tensors (for safetensors)."""
        return {prefix + field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], prefix: str = "") -> VideoScenes:
        return cls(**{field.name: tensors[prefix + field.name] for field in fields(cls)})

    @classmethod
    def concatenate(cls, parts: list[VideoScenes]) -> VideoScenes:
        return cls(**{field.name: torch.cat([getattr(part, field.name) for part in parts]) for field in fields(cls)})


def sample_scenes(count: int, generator: torch.Generator, split: str = "train") -> VideoScenes:
    """``count`` random clips: digit, start colour, direction and background uniform; half the clips turn
    to another colour (uniform among the other four); a random glyph of the digit from ``split``; a start
    chosen so that the whole path (``FRAMES - 1`` pixels) stays on the canvas."""
    _, labels = scenes_base.glyphs(split)
    colour_count = len(scenes_base.COLOUR_NAMES)
    digit = torch.randint(0, scenes_base.NUM_DIGITS, (count,), generator=generator)
    start_colour = torch.randint(0, colour_count, (count,), generator=generator)
    turns = torch.rand(count, generator=generator) < TURNING_SHARE
    other = (start_colour + torch.randint(1, colour_count, (count,), generator=generator)) % colour_count
    colours = torch.stack([start_colour, torch.where(turns, other, start_colour)], dim=1)
    direction = torch.randint(0, len(DIRECTIONS), (count,), generator=generator)
    background = torch.randint(0, len(scenes_base.BACKGROUNDS), (count,), generator=generator)
    glyph = torch.empty(count, dtype=torch.long)
    for value in range(scenes_base.NUM_DIGITS):
        members = torch.nonzero(labels == value)[:, 0]
        chosen = digit == value
        glyph[chosen] = members[torch.randint(0, len(members), (int(chosen.sum()),), generator=generator)]
    size = SIZE_RANGE[0] + (SIZE_RANGE[1] - SIZE_RANGE[0]) * torch.rand(count, generator=generator)
    velocity = torch.tensor(VELOCITIES)[direction]
    travel = velocity * (FRAMES - 1)
    # the corner may range over [0, SIDE - size] in every frame: so over [max(0, -travel), SIDE - size - max(0, travel)] at the start
    low = (-travel).clamp_min(0)
    high = SIDE - size[:, None] - travel.clamp_min(0)
    start = low + (high - low) * torch.rand(count, 2, generator=generator)
    phase = scenes_base.background_phases(count, generator)
    return VideoScenes(digit, colours, direction, background, phase, glyph, start, size)


def render_scenes(scenes: VideoScenes, split: str = "train") -> Tensor:
    """The clips ``[N, 3, FRAMES, 32, 32]`` in [0, 1] of ``scenes``: the digit advances one pixel per
    frame and its colour goes linearly from the start to the end colour."""
    ink, _ = scenes_base.glyphs(split)
    count = len(scenes)
    frame = torch.arange(FRAMES, dtype=torch.float32)
    velocity = torch.tensor(VELOCITIES)[scenes.direction]
    corners = scenes.start[:, None] + velocity[:, None] * frame[None, :, None]  # [N, F, 2]
    mix = (frame / (FRAMES - 1))[None, :, None]
    colours = scenes_base.colour_values(scenes.colours)  # [N, 2, 3]
    colour = colours[:, :1] * (1 - mix) + colours[:, 1:] * mix  # [N, F, 3]
    flat = lambda value: value.reshape(count * FRAMES, *value.shape[2:])  # noqa: E731
    glyphs = ink[scenes.glyph][:, None].expand(count, FRAMES, 8, 8)
    sizes = scenes.size[:, None].expand(count, FRAMES)
    alpha = scenes_base.glyph_alpha(flat(glyphs), flat(corners[..., 1]), flat(corners[..., 0]), flat(sizes), SIDE)
    canvas = scenes_base.backgrounds(scenes.background, scenes.phase, SIDE)  # [N, 3, H, W]
    canvas = canvas[:, None].expand(count, FRAMES, 3, SIDE, SIDE).reshape(count * FRAMES, 3, SIDE, SIDE)
    frames = scenes_base.paint(canvas, alpha, flat(colour))
    return frames.reshape(count, FRAMES, 3, SIDE, SIDE).transpose(1, 2).contiguous()


def scene_prompts(scenes: VideoScenes) -> list[str]:
    """One prompt per clip: "a {colour} {digit} moving {direction} [and turning {colour}] on a
    {background} background"."""
    names = scenes_base.COLOUR_NAMES
    prompts = []
    for i in range(len(scenes)):
        start, end = (int(value) for value in scenes.colours[i])
        turning = f" and turning {names[end]}" if end != start else ""
        background = scenes_base.BACKGROUNDS[scenes.background[i]]
        prompts.append(
            f"a {names[start]} {int(scenes.digit[i])} moving {DIRECTIONS[scenes.direction[i]]}{turning} on a {background} background"
        )
    return prompts


# --- the pipeline ---------------------------------------------------------------------------------------


def transformer_config() -> dict:
    """6 blocks of width 128 (4 heads of 32), FFN 512, (1, 2, 2) patches: 4 latent frames x 4 x 4 = 64
    video tokens; cross-attention to 16 UMT5 tokens (width 128), RMS QK norm across heads, as Wan 2.1."""
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=4,
        attention_head_dim=32,
        in_channels=16,
        out_channels=16,
        text_dim=128,
        freq_dim=256,
        ffn_dim=512,
        num_layers=6,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )


def vae_config() -> dict:
    """Wan 2.1's causal video autoencoder, small: base width 16, two downsamplings both also in time
    (4x per side, 4x in time), 16 latent channels. ``latents_mean`` / ``latents_std`` are set from the
    training data once the autoencoder is trained."""
    return dict(
        base_dim=16,
        z_dim=16,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[True, True],
        scale_factor_temporal=4,
        scale_factor_spatial=4,
        latents_mean=[0.0] * 16,
        latents_std=[1.0] * 16,
    )


def scheduler():
    """``UniPCMultistepScheduler`` with flow sigmas and flow shift 3, as the released Wan 2.1 T2V pipelines."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=FLOW_SHIFT, num_train_timesteps=1000)


def text_encoder(vocab_size: int):
    """The frozen UMT5 encoder: 4 layers of width 128, relative-position biases scaled by :data:`UMT5_LOCALITY`."""
    return scenes_base.t5_text_encoder(vocab_size, UMT5_SEED, width=128, layers=4, umt5=True, locality=UMT5_LOCALITY)


def build_pipeline(transformer=None, vae=None, seed: int = 0):
    """A ``WanPipeline`` of this reference's parts. The text encoder is always the frozen seeded one
    (:data:`UMT5_SEED`); ``transformer`` and ``vae`` default to fresh, untrained ones of the reference
    configs, seeded by ``seed``."""
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel

    tokenizer = scenes_base.t5_tokenizer()
    if transformer is None:
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**transformer_config())
    if vae is None:
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**vae_config())
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder(len(tokenizer)),
        vae=vae,
        scheduler=scheduler(),
        transformer=transformer,
    )


def load_pipeline(path: Path = PIPELINE_DIR):
    """The shipped ``WanPipeline`` (``WanPipeline.from_pretrained`` of its folder), CPU, float32."""
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, seed: int = 0, **kwargs) -> Tensor:
    """Clips ``[N, 3, FRAMES, 32, 32]`` in [0, 1], one per prompt, through ``pipe(...)`` with the empty
    negative prompt (``guidance <= 1``: no guidance, one call per step) and one generator per prompt
    (seeds ``seed``, ``seed + 1``, ...), so that a clip does not depend on the batch."""
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    output = pipe(
        prompt=prompts,
        negative_prompt=[""] * len(prompts),
        height=SIDE,
        width=SIDE,
        num_frames=FRAMES,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generators,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
        output_type="pt",
        **kwargs,
    )
    return output.frames.float().cpu().transpose(1, 2).contiguous()


# --- is it trained? ---------------------------------------------------------------------------------------

#: The checker's heads and their classes.
CHECKER_HEADS = {
    "digit": scenes_base.NUM_DIGITS,
    "start_colour": len(scenes_base.COLOUR_NAMES),
    "end_colour": len(scenes_base.COLOUR_NAMES),
    "direction": len(DIRECTIONS),
    "background": len(scenes_base.BACKGROUNDS),
}


class ClipChecker(nn.Module):
    """A small CNN on clips ``[N, 3, FRAMES, 32, 32]`` in [0, 1], its frames stacked as channels, that
    reads the digit, its first and last colour, its direction and the background
    (:data:`CHECKER_HEADS`); trained on rendered clips only, it scores generated clips against their
    prompts (:func:`clip_accuracy`)."""

    def __init__(self, width: int = 64) -> None:
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
            *stage(3 * FRAMES, width),
            *stage(width, 2 * width),
            *stage(2 * width, 2 * width),
            nn.Flatten(),
            nn.Linear(2 * width * (SIDE // 8) ** 2, 256),
            nn.ReLU(),
        )
        self.head = nn.Linear(256, sum(CHECKER_HEADS.values()))

    def forward(self, clips: Tensor) -> dict[str, Tensor]:
        """Logits per head of :data:`CHECKER_HEADS`."""
        stacked = (clips * 2.0 - 1.0).flatten(1, 2)  # [N, 3 * FRAMES, H, W]
        logits = self.head(self.body(stacked))
        return dict(zip(CHECKER_HEADS, logits.split(list(CHECKER_HEADS.values()), dim=1), strict=True))


def checker_targets(scenes: VideoScenes) -> dict[str, Tensor]:
    """What the checker should read from each clip: its heads' classes."""
    return {
        "digit": scenes.digit,
        "start_colour": scenes.colours[:, 0],
        "end_colour": scenes.colours[:, 1],
        "direction": scenes.direction,
        "background": scenes.background,
    }


def load_checker(path: Path = CHECKER_WEIGHTS) -> ClipChecker:
    """The shipped, trained :class:`ClipChecker`, eval mode."""
    from safetensors.torch import load_file

    checker = ClipChecker()
    checker.load_state_dict(load_file(path))
    return checker.eval()


def clip_accuracy(clips: Tensor, scenes: VideoScenes, checker: ClipChecker | None = None) -> dict[str, float]:
    """How much of each prompt the checker reads back from ``clips [N, 3, FRAMES, 32, 32]`` in [0, 1]:
    accuracy per head (the colours: start and end together) and ``all``, the share of clips with every
    attribute right."""
    if checker is None:
        checker = load_checker()
    with torch.no_grad():
        logits = checker(clips.float().cpu())
    targets = checker_targets(scenes)
    right = {name: logits[name].argmax(dim=1) == targets[name] for name in CHECKER_HEADS}
    return {
        "digit": right["digit"].float().mean().item(),
        "colour": torch.cat([right["start_colour"], right["end_colour"]]).float().mean().item(),
        "direction": right["direction"].float().mean().item(),
        "background": right["background"].float().mean().item(),
        "all": torch.stack(list(right.values())).all(dim=0).float().mean().item(),
    }


def ink_centroids(clips: Tensor, threshold: float = 0.55) -> Tensor:
    """Centre ``[N, FRAMES, 2]`` (row, column, pixels) of the pixels brighter than every background
    (largest channel above ``threshold``: the digit) in each frame of ``clips`` in [0, 1]."""
    ink = (clips.float().amax(dim=1) > threshold).float()  # [N, F, H, W]
    mass = ink.sum(dim=(-2, -1)).clamp_min(1.0)
    coords = torch.arange(SIDE, dtype=torch.float32)
    rows = (ink.sum(dim=-1) * coords).sum(dim=-1) / mass
    cols = (ink.sum(dim=-2) * coords).sum(dim=-1) / mass
    return torch.stack([rows, cols], dim=-1)


def travel_along_direction(clips: Tensor, scenes: VideoScenes) -> Tensor:
    """How far (pixels) the digit's ink centre moves from the first to the last frame along the direction
    its prompt names, per clip (real clips: ``FRAMES - 1`` = 12)."""
    centre = ink_centroids(clips)
    displacement = centre[:, -1] - centre[:, 0]
    velocity = torch.tensor(VELOCITIES)[scenes.direction]
    return (displacement * velocity).sum(dim=-1)
