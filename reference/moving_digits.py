"""A trained Open-Sora v1.2 ``STDiT3`` on "moving digits": 8-frame 16x16 videos of an 8x8 digit
travelling across the canvas.

Random weights show that caching is wired correctly, not that a cached sampler still makes the right
video; this small model, trained in pixel space with Open-Sora v1.2's rectified-flow objective, can be
scored on content: the shared digit classifier reads every generated frame, and the digit's centroid
shows whether it moves. The weights (model and class table in one safetensors file) ship in
``reference/weights``; the training script is ``scripts/train_moving_digits.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from .digits import CANVAS_SIDE, DIGIT_SIDE, NUM_CLASSES, DigitClassifier, load_digit_classifier, load_digits_8
from .opensora_v12 import STDiT3, STDiT3Config

WEIGHTS = Path(__file__).parent / "weights"
MODEL_WEIGHTS = WEIGHTS / "moving-digits-stdit3.safetensors"
MODEL_CONFIG = WEIGHTS / "moving-digits-stdit3.json"
#: Key prefix of the learnt class-caption table inside the model's safetensors file.
CLASS_PREFIX = "class_embedding."

FRAMES = 8
#: The digit's top-left corner moves in [0, SPAN] along each axis.
SPAN = CANVAS_SIDE - DIGIT_SIDE
#: Largest speed along an axis, pixels per frame.
MAX_SPEED = 2
#: Frame rate given to the model's fps embedder (Open-Sora v1.2 conditions on it; constant here).
FPS = 24.0
NUM_TIMESTEPS = 1000
#: Classifier-free guidance scale at which generated frames are classified best (see the model card).
DEFAULT_GUIDANCE = 4.0


def _bounce(position: Tensor) -> Tensor:
    """Fold positions on the line into [0, SPAN], reflecting at both ends (period 2 * SPAN)."""
    folded = position.remainder(2 * SPAN)
    return torch.where(folded > SPAN, 2 * SPAN - folded, folded)


def trajectories(count: int, generator: torch.Generator) -> Tensor:
    """Top-left corners ``[count, FRAMES, 2]`` (row, col): a uniform start and a constant integer
    velocity of at most ``MAX_SPEED`` per axis, never zero, bouncing off the canvas border."""
    start = torch.randint(0, SPAN + 1, (count, 2), generator=generator)
    speeds = torch.tensor(list(range(-MAX_SPEED, MAX_SPEED + 1)))
    pairs = torch.cartesian_prod(speeds, speeds)
    pairs = pairs[(pairs != 0).any(dim=1)]
    velocity = pairs[torch.randint(0, len(pairs), (count,), generator=generator)]
    steps = torch.arange(FRAMES)[None, :, None]
    return _bounce(start[:, None] + velocity[:, None] * steps)


def moving_digits(split: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    """One video per digit of ``split`` (the shared split of :func:`digits.load_digits_8`):
    ``videos [N, 1, FRAMES, 16, 16]`` in [-1, 1] (background -1) and ``labels [N]``.

    Trajectories are drawn from ``seed``, so each seed is a new set of motions of the same digits.
    Each frame is :func:`digits.place_digit` at its corner, taken at once as a 16x16 window of the
    digit padded by ``SPAN`` pixels of background on every side.
    """
    digits8, labels = load_digits_8(split)
    corners = trajectories(len(digits8), torch.Generator().manual_seed(seed))
    padded = F.pad(digits8[:, 0], (SPAN, SPAN, SPAN, SPAN), value=-1.0)  # [N, 24, 24]
    windows = padded.unfold(1, CANVAS_SIDE, 1).unfold(2, CANVAS_SIDE, 1)  # [N, 9, 9, 16, 16]
    # the window at (i, j) holds the digit with its top-left corner at (SPAN - i, SPAN - j)
    videos = windows[torch.arange(len(digits8))[:, None], SPAN - corners[..., 0], SPAN - corners[..., 1]]
    return videos[:, None], labels


def model_config(
    depth: int = 4,
    hidden_size: int = 64,
    num_heads: int = 4,
    caption_channels: int = 32,
    patch: int = 4,
    caption_tokens: int = 8,
) -> STDiT3Config:
    """STDiT3 in pixel space: one channel, (1, patch, patch) patches (8 frames x 16 tokens at 4: a
    third of the cost per video of 2x2 patches for the same pixels, so a CPU run sees 3x more videos),
    velocity only (``pred_sigma=False``), a caption of ``caption_tokens`` learnt tokens per class, 10 %
    caption dropout, and ``input_sq_size`` = the canvas side so the positional embedding is unscaled
    at 16x16. One token reaches every video token as the same vector (softmax over one key); several
    let each position attend to a different part of the class, as T5 tokens do in Open-Sora."""
    return STDiT3Config(
        input_size=(FRAMES, CANVAS_SIDE, CANVAS_SIDE),
        input_sq_size=CANVAS_SIDE,
        in_channels=1,
        patch_size=(1, patch, patch),
        hidden_size=hidden_size,
        depth=depth,
        num_heads=num_heads,
        class_dropout_prob=0.1,
        pred_sigma=False,
        caption_channels=caption_channels,
        model_max_length=caption_tokens,
        qk_norm=True,
    )


def class_captions(class_table: Tensor, labels: Tensor | list[int]) -> Tensor:
    """The caption ``y [N, 1, tokens, caption_channels]`` of each label: its entry of the class table
    ``[classes, tokens, caption_channels]``."""
    labels = torch.as_tensor(labels, dtype=torch.long, device=class_table.device)
    return class_table[labels][:, None]


def model_kwargs(count: int, device: torch.device | str = "cpu") -> dict[str, Tensor | None]:
    """The extra inputs of Open-Sora v1.2's text-to-video call for ``count`` samples, except ``y``.

    ``mask`` is None: every caption is all of its tokens, no padding to mask. ``x_mask`` is all True, as the
    RFLOW sampler passes it when no frame is a condition; it gives the same output as no ``x_mask``.
    """
    return {
        "mask": None,
        "x_mask": torch.ones(count, FRAMES, dtype=torch.bool, device=device),
        "fps": torch.full((count,), FPS, device=device),
        "height": torch.full((count,), float(CANVAS_SIDE), device=device),
        "width": torch.full((count,), float(CANVAS_SIDE), device=device),
    }


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """``RFlowScheduler.add_noise``: ``x_t = (1 - t/1000) x0 + (t/1000) noise`` (``t`` ``[N]`` in [0, 1000])."""
    s = (t / NUM_TIMESTEPS).view(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise


def save_moving_digits_stdit3(
    model: STDiT3, class_table: Tensor, path: Path = MODEL_WEIGHTS, metadata: dict[str, str] | None = None
) -> None:
    """Write the model and class table to one safetensors file and the config to ``path`` with ``.json``."""
    from safetensors.torch import save_file

    tensors = {name: value.detach().contiguous() for name, value in model.state_dict().items()}
    tensors[CLASS_PREFIX + "weight"] = class_table.detach().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata=metadata)
    path.with_suffix(".json").write_text(json.dumps(asdict(model.config), indent=2) + "\n")


def load_moving_digits_stdit3(path: Path = MODEL_WEIGHTS) -> tuple[STDiT3, Tensor]:
    """The shipped STDiT3 (eval mode) and its class table ``[10, tokens, caption_channels]``, without pickle."""
    from safetensors.torch import load_file

    config = STDiT3Config.from_dict(json.loads(path.with_suffix(".json").read_text()))
    tensors = load_file(path)
    class_table = tensors.pop(CLASS_PREFIX + "weight")
    model = STDiT3(config)
    model.load_state_dict(tensors, strict=True)
    return model.eval(), class_table


def sample_moving_digits(
    model: STDiT3,
    class_table: Tensor,
    labels: Tensor | list[int],
    steps: int = 30,
    seed: int = 0,
    guidance: float = DEFAULT_GUIDANCE,
) -> Tensor:
    """Generate one video per label: ``[N, 1, FRAMES, 16, 16]`` in [0, 1].

    Open-Sora v1.2's RFLOW sampler: timesteps ``(1 - i/N) * 1000`` (no timestep transform: its
    resolution and frame-count ratios are meant for VAE latents), guidance as one batch [cond, uncond]
    whose null caption is ``y_embedder.y_embedding``, ``z += v dt``. The model predicts velocity only,
    so its output is used whole. Noise comes from a CPU generator: samples do not depend on the device.
    """
    device = class_table.device
    y = class_captions(class_table, labels)
    count = y.shape[0]
    null = model.y_embedder.y_embedding[None, None].expand_as(y)
    extra = {"y": torch.cat([y, null]), **model_kwargs(2 * count, device)}
    shape = (count, model.in_channels, FRAMES, CANVAS_SIDE, CANVAS_SIDE)
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    timesteps = [(1.0 - i / steps) * NUM_TIMESTEPS for i in range(steps)]
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            pred = model(torch.cat([z, z]), torch.full((2 * count,), t, device=device), **extra)
            pred_cond, pred_uncond = pred.chunk(2, dim=0)
            v_pred = pred_uncond + guidance * (pred_cond - pred_uncond)
            dt = (t - timesteps[i + 1]) if i + 1 < steps else t
            z = z + v_pred * dt / NUM_TIMESTEPS
    return ((z + 1.0) / 2.0).clamp(0.0, 1.0)


def frame_accuracy(videos: Tensor, labels: Tensor | list[int], classifier: DigitClassifier | None = None) -> tuple[float, float]:
    """Classifier accuracy on generated ``videos [N, 1, FRAMES, 16, 16]`` in [0, 1]: per frame, and
    per video by majority vote over its frames."""
    if classifier is None:
        classifier = load_digit_classifier()
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    frames = videos.float().cpu().transpose(1, 2).reshape(-1, 1, CANVAS_SIDE, CANVAS_SIDE)
    with torch.no_grad():
        predicted = classifier(frames * 2.0 - 1.0).argmax(dim=1).view(len(labels), -1)
    votes = torch.nn.functional.one_hot(predicted, NUM_CLASSES).sum(dim=1).argmax(dim=1)
    per_frame = (predicted == labels[:, None]).float().mean().item()
    return per_frame, (votes == labels).float().mean().item()


def centroids(videos: Tensor) -> Tensor:
    """Ink-weighted centre ``[N, FRAMES, 2]`` (row, col, in pixels) of each frame of ``videos`` in [0, 1]."""
    ink = videos.float()[:, 0]
    mass = ink.sum(dim=(-2, -1)).clamp_min(1e-6)
    coords = torch.arange(CANVAS_SIDE, dtype=ink.dtype, device=ink.device)
    rows = (ink.sum(dim=-1) * coords).sum(dim=-1) / mass
    cols = (ink.sum(dim=-2) * coords).sum(dim=-1) / mass
    return torch.stack([rows, cols], dim=-1)
