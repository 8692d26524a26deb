"""PNG figures for the CLI and the demo (matplotlib, the ``plot`` extra): schedules, outputs, comparisons.

Every writer saves to a temporary name and renames, so a figure is either complete or absent.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smoothcache_core import Schedule
from smoothcache_core.files import write_atomic


def pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install 'smoothcache[plot]'") from error
    return plt


def save_figure(figure: Any, path: Path) -> None:
    try:
        write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"))
    finally:
        pyplot().close(figure)


def schedule_heatmap(schedule: Schedule, path: str | os.PathLike) -> None:
    """Component list x step: dark = compute, light = reuse, with the MAC fraction in the title."""
    plt = pyplot()
    keys = list(schedule.tables)
    grid = np.array([schedule.tables[key] for key in keys])
    figure, axis = plt.subplots(figsize=(max(6.0, 0.16 * schedule.steps + 2), 0.3 * len(keys) + 1.4))
    axis.imshow(grid, aspect="auto", cmap="Greys", vmin=-0.3, vmax=1.0, interpolation="nearest")
    axis.set_yticks(range(len(keys)), keys, fontsize=7 if len(keys) > 20 else 9)
    axis.set_xlabel("step (model evaluation)")
    fraction = schedule.provenance.get("mac_fraction")
    reused = int((grid == 0).sum())
    title = f"compute (dark) / reuse (light): {reused} of {grid.size} reused"
    axis.set_title(title + (f", MAC fraction {fraction:.3f}" if isinstance(fraction, float) else ""))
    save_figure(figure, Path(path))


def to_unit_range(tensor: torch.Tensor, data_range: float | None, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Images already in [0, 1] unchanged; otherwise scaled by the range of ``reference`` (e.g. latents)."""
    if data_range is not None:
        return tensor
    reference = tensor if reference is None else reference
    low, high = reference.min(), reference.max()
    return (tensor - low) / (high - low).clamp_min(1e-8)


def _as_images(batch: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] -> [B, H, W, 3 or 1] in [0, 1] for display."""
    images = batch.detach().float().clamp(0, 1).cpu()
    if images.shape[1] > 3:
        images = images[:, :3]
    return images.permute(0, 2, 3, 1).numpy()


def _show(axis: Any, image: np.ndarray) -> None:
    axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1)
    axis.set_xticks([])
    axis.set_yticks([])


def _spectrogram(audio: torch.Tensor, n_fft: int = 256) -> np.ndarray:
    signal = audio.detach().double().cpu()
    n_fft = min(n_fft, signal.shape[-1])
    window = torch.hann_window(n_fft, dtype=torch.float64)
    power = torch.stft(signal, n_fft=n_fft, hop_length=max(n_fft // 4, 1), window=window, return_complex=True).abs().square()
    return (10 * torch.log10(power + 1e-10)).numpy()


def side_by_side(reference: torch.Tensor, cached: torch.Tensor, modality: str, path: str | os.PathLike, title: str = "") -> None:
    """Uncached and cached outputs of the same seeds: image rows (and the difference), video frames,
    or audio spectrograms."""
    plt = pyplot()
    if modality == "audio":
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
        spectrograms = [_spectrogram(audio[0, 0]) for audio in (reference, cached)]
        low, high = spectrograms[0].min(), spectrograms[0].max()  # one colour scale for both
        for axis, spectrogram, name in zip(axes, spectrograms, ("uncached", "cached"), strict=False):
            axis.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high)
            axis.set_title(f"{name}: spectrogram (dB)")
            axis.set_xlabel("frame")
        axes[0].set_ylabel("frequency bin")
    elif modality == "video":
        frames = reference.shape[2]
        figure, axes = plt.subplots(2, frames, figsize=(1.3 * frames + 1, 3), squeeze=False)
        for row, video, name in ((0, reference, "uncached"), (1, cached, "cached")):
            images = _as_images(video[0].transpose(0, 1))
            for column in range(frames):
                _show(axes[row][column], images[column])
            axes[row][0].set_ylabel(name)
    else:
        count = min(reference.shape[0], 8)
        difference = (reference[:count] - cached[:count]).abs()
        difference = difference / difference.max().clamp_min(1e-8)
        figure, axes = plt.subplots(3, count, figsize=(1.6 * count + 1, 5), squeeze=False)
        for row, batch, name in ((0, reference, "uncached"), (1, cached, "cached"), (2, difference, "|difference| (scaled)")):
            shown = _as_images(batch[:count])
            for column in range(count):
                _show(axes[row][column], shown[column])
            axes[row][0].set_ylabel(name, fontsize=8)
    if title:
        figure.suptitle(title, y=1.02)
    save_figure(figure, Path(path))


def write_outputs(outputs: torch.Tensor, modality: str, folder: str | os.PathLike, stem: str, sample_rate: int | None = None) -> list[Path]:
    """Save generated samples: PNG per image, a PNG strip of frames per video, 16-bit WAV per audio."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, sample in enumerate(outputs):
        if modality == "audio":
            path = folder / f"{stem}-{index}.wav"
            pcm = (sample.detach().float().clamp(-1, 1).cpu().numpy().T * 32767).astype("<i2")
            with wave.open(str(path), "wb") as file:
                file.setnchannels(pcm.shape[1])
                file.setsampwidth(2)
                file.setframerate(sample_rate or 44100)
                file.writeframes(pcm.tobytes())
        else:
            image = sample if modality == "image" else torch.cat(list(sample.transpose(0, 1)), dim=-1)
            shown = _as_images(image[None])[0]
            path = folder / f"{stem}-{index}.png"
            pyplot().imsave(
                path, shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray" if shown.shape[-1] == 1 else None, vmin=0, vmax=1
            )
        written.append(path)
    return written
