"""Train the digit classifier that scores generated digits (``reference/weights/digit-classifier.safetensors``).

It reads both distributions that the digit references generate: 8x8 digits upscaled to 16x16 (the
image DiT) and 8x8 digits placed anywhere on the 16x16 canvas (frames of the moving-digits video).
Seeded and deterministic on CPU. Run from the repository root:

    python scripts/train_digit_classifier.py [--epochs 40] [--out reference/weights/digit-classifier.safetensors]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from smoothcache.reference.digits import (
    CANVAS_SIDE,
    CLASSIFIER_WEIGHTS,
    DIGIT_SIDE,
    DigitClassifier,
    load_digits_8,
    load_digits_16,
    place_digit,
    upscale_digits,
)


def placed_at_random(digits8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each digit at its own random offset on the canvas, as in a video frame."""
    offsets = torch.randint(0, CANVAS_SIDE - DIGIT_SIDE + 1, (len(digits8), 2), generator=generator)
    return torch.stack([place_digit(digit, int(row), int(col)) for digit, (row, col) in zip(digits8, offsets, strict=False)])


def jittered(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small random rotations, scalings and shifts, so that imperfect generated digits are still read."""
    count = len(images)
    angle = (torch.rand(count, generator=generator) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(count, generator=generator) * 2 - 1) * 0.1
    shift = (torch.rand(count, 2, generator=generator) * 2 - 1) * (1.5 / (CANVAS_SIDE / 2))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # grid_sample fills with 0, so warp in [0, 1] where the blank canvas is 0
    return F.grid_sample((images + 1) / 2, grid, align_corners=False) * 2 - 1


def every_offset(digits8: torch.Tensor) -> torch.Tensor:
    """All digits at all offsets: ``[offsets * N, 1, 16, 16]``, offsets outermost."""
    limit = CANVAS_SIDE - DIGIT_SIDE + 1
    return torch.cat([place_digit(digits8, row, col) for row in range(limit) for col in range(limit)])


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in images.split(2048)])
    return (predicted == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CLASSIFIER_WEIGHTS)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(args.seed)
    digits8, labels = load_digits_8("train")
    test8, test_labels = load_digits_8("test")
    test16, _ = load_digits_16("test")
    test_placed, test_placed_labels = every_offset(test8), test_labels.repeat((CANVAS_SIDE - DIGIT_SIDE + 1) ** 2)

    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(digits8) / args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(digits8), generator=generator)
        total = 0.0
        for batch in order.split(args.batch):
            # every digit twice per epoch: upscaled (jittered) and placed at a random offset
            images = torch.cat([jittered(upscale_digits(digits8[batch]), generator), placed_at_random(digits8[batch], generator)])
            loss = F.cross_entropy(model(images), labels[batch].repeat(2))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        if (epoch + 1) % 5 == 0 or epoch + 1 == args.epochs:
            model.eval()
            print(
                f"epoch {epoch + 1:3d}  loss {total / steps_per_epoch:.4f}  "
                f"test upscaled {accuracy(model, test16, test_labels):.4f}  "
                f"test placed {accuracy(model, test_placed, test_placed_labels):.4f}  "
                f"{time.perf_counter() - start:.0f}s",
                flush=True,
            )

    model.eval()
    upscaled, placed = accuracy(model, test16, test_labels), accuracy(model, test_placed, test_placed_labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"test_accuracy_upscaled": f"{upscaled:.4f}", "test_accuracy_placed": f"{placed:.4f}"}
    save_file(model.state_dict(), args.out, metadata=metadata)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"saved {args.out} ({parameters} parameters) in {time.perf_counter() - start:.0f}s")
    print(f"test accuracy: upscaled {upscaled:.4f} ({len(test16)} digits), placed {placed:.4f} (every offset, {len(test_placed)} frames)")


if __name__ == "__main__":
    main()
