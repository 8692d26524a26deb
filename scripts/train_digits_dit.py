"""Train the class-conditional pixel-space DiT on 16x16 digits (``reference/weights/digits-dit``).

Epsilon-prediction DDPM objective on diffusers' default schedule, AdamW, 10 % class dropout for
classifier-free guidance, EMA of the weights; seeded and deterministic on CPU. At the end the EMA model
is saved with ``save_pretrained``, the loss curve is plotted, and generated digits are scored with the
shipped digit classifier. Run from the repository root:

    python scripts/train_digits_dit.py [--steps N] [--out reference/weights/digits-dit]
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch
from diffusers import DiTTransformer2DModel
from diffusers.models.embeddings import LabelEmbedding
from torch import nn
from torch.nn import functional as F

from smoothcache.reference.digits import (
    DEFAULT_GUIDANCE,
    DIT_WEIGHTS,
    NULL_CLASS,
    NUM_CLASSES,
    WEIGHTS,
    digit_accuracy,
    load_digit_classifier,
    load_digits_16,
    sample_digits,
    training_scheduler,
)

#: 6 blocks of width 128 (4 heads x 32) over 8x8 = 64 patches of 2x2 pixels.
DIT_CONFIG = dict(
    num_attention_heads=4,
    attention_head_dim=32,
    in_channels=1,
    out_channels=1,
    num_layers=6,
    sample_size=16,
    patch_size=2,
    num_embeds_ada_norm=NUM_CLASSES,
    norm_type="ada_norm_zero",
)
CLASS_DROPOUT = 0.1
#: Classifier-free guidance scales tried after training (the default is in digits.DEFAULT_GUIDANCE).
GUIDANCE_SWEEP = (1.0, 2.0, 3.0, 4.0, 5.0)


def build_model(seed: int) -> DiTTransformer2DModel:
    """The DiT with DiT's adaLN-Zero initialisation: modulation and output layers zero, so every block
    starts as the identity (diffusers leaves them random)."""
    torch.manual_seed(seed)
    model = DiTTransformer2DModel(**DIT_CONFIG)
    for block in model.transformer_blocks:
        nn.init.zeros_(block.norm1.linear.weight)
        nn.init.zeros_(block.norm1.linear.bias)
    for layer in (model.proj_out_1, model.proj_out_2):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    # Each block (and the output layer) embeds the label itself and would drop it independently in
    # train mode; labels are dropped once per sample in the loop instead, to the same null row.
    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = 0.0
    return model


def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for average, current in zip(ema.parameters(), model.parameters(), strict=False):
            average.lerp_(current, 1.0 - decay)


def plot_loss(history: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps, losses = zip(*history, strict=False)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(steps, losses)
    axis.set_xlabel("training step")
    axis.set_ylabel("epsilon MSE (mean over logging window)")
    axis.set_yscale("log")
    axis.set_title("digits DiT: training loss")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def evaluate(model: DiTTransformer2DModel, per_class: int, guidances: tuple[float, ...]) -> dict[str, float]:
    """Classifier accuracy of ``per_class`` generated digits per class: DDIM 50 and DPM-Solver 25 steps."""
    classifier = load_digit_classifier()
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    results = {}
    for scheduler, steps in (("ddim", 50), ("dpm", 25)):
        for guidance in guidances:
            images = sample_digits(model, labels, steps, scheduler=scheduler, seed=0, guidance=guidance)
            results[f"{scheduler}-{steps} cfg {guidance:g}"] = digit_accuracy(images, labels, classifier)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=10, help="generated digits per class for the accuracy")
    parser.add_argument("--sweep", action="store_true", help=f"score every guidance of {GUIDANCE_SWEEP}")
    parser.add_argument("--out", type=Path, default=DIT_WEIGHTS)
    parser.add_argument("--plot", type=Path, default=WEIGHTS / "digits-dit-loss.png")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(args.seed)
    images, labels = load_digits_16("train")
    scheduler = training_scheduler()
    timesteps = scheduler.config.num_train_timesteps

    model = build_model(args.seed).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    def learning_rate(step: int) -> float:
        """Linear warm-up, then cosine decay to a tenth."""
        if step < args.warmup:
            return (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{parameters} parameters, {len(images)} training digits, {args.steps} steps of {args.batch}", flush=True)

    history: list[tuple[int, float]] = []
    window: list[float] = []
    order = torch.empty(0, dtype=torch.long)
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(args.steps):
        if len(order) < args.batch:
            order = torch.cat([order, torch.randperm(len(images), generator=generator)])
        batch, order = order[: args.batch], order[args.batch :]
        clean = images[batch]
        noise = torch.randn(clean.shape, generator=generator)
        t = torch.randint(0, timesteps, (len(batch),), generator=generator)
        dropped = torch.rand(len(batch), generator=generator) < CLASS_DROPOUT
        class_labels = torch.where(dropped, NULL_CLASS, labels[batch])
        prediction = model(scheduler.add_noise(clean, noise, t), timestep=t, class_labels=class_labels).sample
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        # EMA warm-up: average over the steps so far while they are fewer than 1 / (1 - decay)
        update_ema(ema, model, min(args.ema, (1 + step) / (10 + step)))
        window.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            history.append((step + 1, sum(window) / len(window)))
            window = []
            if (step + 1) % 250 == 0 or step + 1 == args.steps:
                elapsed = time.perf_counter() - start
                print(f"step {step + 1:5d}  loss {history[-1][1]:.4f}  lr {schedule.get_last_lr()[0]:.2e}  {elapsed:.0f}s", flush=True)
    train_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    ema.save_pretrained(args.out, safe_serialization=True)
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot_loss(history, args.plot)
    size = (args.out / "diffusion_pytorch_model.safetensors").stat().st_size
    print(f"saved {args.out} ({size / 2**20:.2f} MiB), loss curve {args.plot}", flush=True)
    print(f"training took {train_seconds:.0f}s wall, {cpu_seconds:.0f}s CPU ({torch.get_num_threads()} threads)", flush=True)

    loaded = DiTTransformer2DModel.from_pretrained(args.out).eval()
    guidances = GUIDANCE_SWEEP if args.sweep else (DEFAULT_GUIDANCE,)
    for name, value in evaluate(loaded, args.per_class, guidances).items():
        print(f"generated-digit accuracy {name}: {value:.3f}", flush=True)


if __name__ == "__main__":
    main()
