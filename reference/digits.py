"""Small trained references on scikit-learn's bundled 8x8 digits: data, a digit classifier and a
class-conditional pixel-space DiT.

Random weights show that caching is wired correctly, not that its samples still look right; with a
trained DiT and a classifier, a cached sampler can be scored on content (accuracy of the generated
digits, Fréchet distance of classifier features). Weights ship in ``reference/weights`` and load
without pickle; the training scripts are in ``scripts/``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: Shipped weights: the classifier's safetensors file and the DiT's ``save_pretrained`` folder.
WEIGHTS = Path(__file__).parent / "weights"
CLASSIFIER_WEIGHTS = WEIGHTS / "digit-classifier.safetensors"
DIT_WEIGHTS = WEIGHTS / "digits-dit"

NUM_CLASSES = 10
#: With ``class_dropout_prob > 0`` diffusers' ``LabelEmbedding`` adds one table row, index
#: ``num_classes``, and maps dropped labels to it: the unconditional label of classifier-free guidance.
NULL_CLASS = NUM_CLASSES
DIGIT_SIDE = 8
CANVAS_SIDE = 16
#: Fraction of each class held out for testing, and the seed of that stratified split.
TEST_FRACTION = 0.15
SPLIT_SEED = 0
#: Guidance scale at which generated digits are classified best (tuned: see digits-dit.md).
DEFAULT_GUIDANCE = 3.0
#: Samplers by name: the two the shipped schedules were made for, then held-out ones (other solvers,
#: a Karras grid, a second-order solver evaluating twice per step).
SCHEDULERS = ("ddim", "dpm", "euler", "euler-karras", "unipc", "heun")


@cache
def _split(split: str) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    digits = load_digits()
    indices = torch.arange(len(digits.target)).numpy()
    train, test = train_test_split(indices, test_size=TEST_FRACTION, stratify=digits.target, random_state=SPLIT_SEED)
    chosen = train if split == "train" else test
    images = torch.from_numpy(digits.images[chosen]).float()[:, None] / 16.0 * 2.0 - 1.0
    return images, torch.from_numpy(digits.target[chosen]).long()


def load_digits_8(split: str) -> tuple[Tensor, Tensor]:
    """The raw digits ``[N, 1, 8, 8]`` in [-1, 1] (ink 16 -> 1) and labels ``[N]`` of a fixed,
    seeded, stratified split: ``"train"`` (85 %) or ``"test"``."""
    images, labels = _split(split)
    return images.clone(), labels.clone()


def upscale_digits(digits8: Tensor) -> Tensor:
    """``[..., 8, 8]`` digits to ``[..., 16, 16]`` by antialiased bilinear interpolation (range kept)."""
    flat = digits8.reshape(-1, 1, DIGIT_SIDE, DIGIT_SIDE)
    side = (CANVAS_SIDE, CANVAS_SIDE)
    upscaled = F.interpolate(flat, size=side, mode="bilinear", antialias=True, align_corners=False)
    return upscaled.clamp(-1.0, 1.0).reshape(*digits8.shape[:-2], *side)


def load_digits_16(split: str) -> tuple[Tensor, Tensor]:
    """The digits upscaled to ``[N, 1, 16, 16]`` in [-1, 1] and labels ``[N]``; same split as
    :func:`load_digits_8`. This is the image DiT's training distribution."""
    images, labels = load_digits_8(split)
    return upscale_digits(images), labels


def place_digit(digit8: Tensor, row: int, col: int) -> Tensor:
    """An ``[..., 8, 8]`` digit in [-1, 1] on a blank (-1) ``[..., 16, 16]`` canvas, top-left corner at
    ``(row, col)``: a frame of the moving-digits video data, which the classifier also reads."""
    limit = CANVAS_SIDE - DIGIT_SIDE
    if not (0 <= row <= limit and 0 <= col <= limit):
        raise ValueError(f"offset ({row}, {col}) puts the digit off the canvas; both must be in [0, {limit}]")
    canvas = digit8.new_full((*digit8.shape[:-2], CANVAS_SIDE, CANVAS_SIDE), -1.0)
    canvas[..., row : row + DIGIT_SIDE, col : col + DIGIT_SIDE] = digit8
    return canvas


class DigitClassifier(nn.Module):
    """A small CNN on ``[N, 1, 16, 16]`` images in [-1, 1]; its penultimate activations are the
    features of a Fréchet distance between generated and real digits."""

    def __init__(self, width: int = 32, feature_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (CANVAS_SIDE // 4) ** 2, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations ``[N, feature_dim]``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, 10]``."""
        return self.head(self.features(x))


def load_digit_classifier() -> DigitClassifier:
    """The shipped, trained :class:`DigitClassifier`, in eval mode."""
    from safetensors.torch import load_file

    classifier = DigitClassifier()
    classifier.load_state_dict(load_file(CLASSIFIER_WEIGHTS))
    return classifier.eval()


def digit_accuracy(images: Tensor, labels: Tensor | list[int], classifier: DigitClassifier | None = None) -> float:
    """Fraction of ``images`` (``[N, 1, 16, 16]`` in [0, 1], as :func:`sample_digits` returns them)
    that the classifier reads as their ``labels``."""
    if classifier is None:
        classifier = load_digit_classifier()
    labels = torch.as_tensor(labels)
    with torch.no_grad():
        predicted = classifier(images.float().cpu() * 2.0 - 1.0).argmax(dim=1)
    return (predicted == labels.cpu()).float().mean().item()


def training_scheduler():
    """The DDPM noise schedule the DiT was trained with (diffusers defaults: linear betas, 1000 steps,
    epsilon prediction); samplers are built from its config. Predicted clean images are not clipped:
    with guidance 3 clipping them at every DDIM step drops the classifier's accuracy from 1.0 to 0.62."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(clip_sample=False)


def make_scheduler(scheduler: str, steps: int):
    """The sampler ``scheduler`` (see :data:`SCHEDULERS`) on the training noise schedule, set to ``steps`` steps."""
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        HeunDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
    classes = {
        "ddim": DDIMScheduler,
        "dpm": DPMSolverMultistepScheduler,
        "euler": EulerDiscreteScheduler,
        "euler-karras": EulerDiscreteScheduler,
        "unipc": UniPCMultistepScheduler,
        "heun": HeunDiscreteScheduler,
    }
    extra = {"use_karras_sigmas": True} if scheduler == "euler-karras" else {}
    solver = classes[scheduler].from_config(training_scheduler().config, **extra)
    solver.set_timesteps(steps)
    return solver


def load_digits_dit():
    """The shipped class-conditional pixel-space ``DiTTransformer2DModel`` (16x16, one channel), eval mode."""
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel.from_pretrained(DIT_WEIGHTS).eval()


def sample_digits(
    model,
    labels: list[int] | Tensor,
    steps: int,
    scheduler: str = "ddim",
    seed: int = 0,
    guidance: float = DEFAULT_GUIDANCE,
) -> Tensor:
    """Generate one digit per label: ``[N, 1, 16, 16]`` in [0, 1].

    DDIM (eta 0), DPM-Solver++ (2nd order) or another of :data:`SCHEDULERS` from the training schedule, with classifier-free guidance
    whose conditional and unconditional halves are one batch, as ``DiTPipeline`` runs it: the call
    pattern that a cache sees. Noise comes from a CPU generator, so samples do not depend on the device.
    """
    solver = make_scheduler(scheduler, steps)

    device = model.device
    labels = torch.as_tensor(labels, dtype=torch.long).to(device)
    count = labels.shape[0]
    side = model.config.sample_size
    shape = (count, model.config.in_channels, side, side)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device, model.dtype)
    x = x * solver.init_noise_sigma if solver.init_noise_sigma != 1 else x
    class_labels = torch.cat([labels, torch.full_like(labels, NULL_CLASS)])
    with torch.no_grad():
        for t in solver.timesteps:
            timestep = t.expand(2 * count).to(device)
            latent = torch.cat([x, x])
            out = model(solver.scale_model_input(latent, t), timestep=timestep, class_labels=class_labels).sample
            eps_cond, eps_uncond = out.chunk(2)
            x = solver.step(eps_uncond + guidance * (eps_cond - eps_uncond), t, x).prev_sample
    return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)
