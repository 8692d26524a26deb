"""Shared pieces of the long, resumable CPU training runs of the FLUX and Wan references
(``train_flux_digits.py``, ``train_wan_digits.py``): checkpoints without pickle, a loss log that
survives restarts, the learning-rate schedule, EMA, loss plots and image grids.

A checkpoint is one safetensors file: the model, its EMA and the AdamW moments as tensors, the step and
the run's settings as JSON in the file's metadata. It is written to a temporary name and renamed, so a
run killed while saving keeps the previous one. Randomness comes from generators seeded by the step,
so a resumed run draws exactly the batches and noise an uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import nn


def cosine_factor(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value


def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model``, parameter by parameter (buffers copied)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
        for average, current in zip(ema.buffers(), model.buffers(), strict=True):
            average.copy_(current)


def ema_decay(step: int, decay: float) -> float:
    """EMA warm-up: average over the steps so far while they are fewer than about ``1 / (1 - decay)``."""
    return min(decay, (1 + step) / (10 + step))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of one training step: a function of the run's seed and the step only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def save_checkpoint(path: Path, step: int, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, meta: dict) -> None:
    """``modules`` (name -> module), the AdamW state and ``meta`` (JSON-able) at ``step`` into ``path``."""
    from safetensors.torch import save_file

    tensors = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().contiguous().cpu()
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, partial, metadata={"state": json.dumps({"step": step} | meta)})
    partial.replace(path)


def load_checkpoint(path: Path, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns its metadata (with ``step``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(path)
    with safe_open(path, "pt") as handle:
        meta = json.loads(handle.metadata()["state"])
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)})
    if optimizer is not None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return meta


class LossLog:
    """A tab-separated log ``step  loss  lr  seconds`` appended as training goes; on resume, the lines
    past the checkpoint's step are dropped (they will be trained again)."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = [line for line in self.read_lines() if int(line.split("\t")[0]) <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))

    def read_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text().splitlines() if line and not line.startswith("#")]

    def append(self, step: int, loss: float, lr: float, seconds: float) -> None:
        with self.path.open("a") as handle:
            handle.write(f"{step}\t{loss:.6f}\t{lr:.3e}\t{seconds:.1f}\n")

    def steps_and_losses(self) -> tuple[list[int], list[float]]:
        rows = [line.split("\t") for line in self.read_lines()]
        return [int(row[0]) for row in rows], [float(row[1]) for row in rows]


def read_loss_log(path: Path) -> tuple[list[int], list[float], list[float]]:
    """Steps, losses and cumulative training seconds of a :class:`LossLog` file."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [int(r[0]) for r in rows], [float(r[1]) for r in rows], [float(r[3]) for r in rows]


def plot_losses(path: Path, steps: list[int], losses: list[float], title: str, ylabel: str, window: int = 20) -> None:
    """The loss per logged step (grey) and its running mean over ``window`` entries, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    values = torch.tensor(losses)
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.plot(steps, losses, color="0.75", linewidth=0.6, label="logged loss")
    if len(values) >= window:
        smooth = values.unfold(0, window, 1).mean(dim=1)
        axis.plot(steps[window - 1 :], smooth, color="C0", label=f"mean of {window}")
    axis.set_xlabel("training step")
    axis.set_ylabel(ylabel)
    axis.set_yscale("log")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def save_grid(path: Path, images: torch.Tensor, columns: int = 8, scale: int = 3) -> None:
    """``images [N, 3, H, W]`` in [0, 1] as one PNG grid, 2-pixel gaps, nearest-neighbour upscaled."""
    import numpy as np
    from PIL import Image

    count, _, height, width = images.shape
    rows = (count + columns - 1) // columns
    sheet = torch.ones(3, rows * (height + 2), columns * (width + 2))
    for index, image in enumerate(images.float().clamp(0, 1)):
        row, column = divmod(index, columns)
        sheet[:, row * (height + 2) : row * (height + 2) + height, column * (width + 2) : column * (width + 2) + width] = image
    pixels = (sheet.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of [0, 1] tensors."""
    mse = (a.float() - b.float()).pow(2).mean().clamp_min(1e-12)
    return (10 * torch.log10(1 / mse)).item()


class Clock:
    """Training seconds across restarts: the seconds of earlier runs plus this run's."""

    def __init__(self, earlier: float = 0.0) -> None:
        self.earlier = earlier
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return self.earlier + time.perf_counter() - self.start
