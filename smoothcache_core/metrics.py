"""Fidelity of a cached output against the uncached output of the same seed (torch only).

Images are ``[B, C, H, W]`` in a known range, video ``[B, C, T, H, W]`` (frames are scored as
images), audio ``[B, channels, samples]``. Every function returns the mean over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _frames(images: torch.Tensor) -> torch.Tensor:
    """Video ``[B, C, T, H, W]`` as a batch of frames ``[B*T, C, H, W]``; images unchanged."""
    if images.dim() == 5:
        return images.transpose(1, 2).flatten(0, 1)
    if images.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W] or video [B, C, T, H, W], got shape {tuple(images.shape)}")
    return images


def psnr(reference: torch.Tensor, test: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB per image (or frame), averaged; inf when identical."""
    reference, test = _frames(reference).double(), _frames(test).double()
    mse = (reference - test).square().flatten(1).mean(dim=1)
    values = torch.where(mse > 0, 10 * torch.log10(data_range**2 / mse.clamp_min(1e-30)), torch.full_like(mse, math.inf))
    return float(values.mean())


def ssim(reference: torch.Tensor, test: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03),
    per channel, averaged over pixels, channels and images (or frames)."""
    reference, test = _frames(reference).double(), _frames(test).double()
    channels = reference.shape[1]
    size = min(window, reference.shape[-1], reference.shape[-2])
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    gauss = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (gauss[:, None] * gauss[None, :]) / gauss.sum() ** 2
    kernel = kernel.expand(channels, 1, size, size).to(reference.device)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(reference), blur(test)
    var_x = blur(reference * reference) - mu_x**2
    var_y = blur(test * test) - mu_y**2
    cov = blur(reference * test) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def _power_spectrogram(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    signal = audio.double().flatten(0, -2)  # every channel of every sample
    n_fft = min(n_fft, signal.shape[-1])
    hop = min(hop, n_fft)
    window = torch.hann_window(n_fft, dtype=torch.float64, device=signal.device)
    spectrum = torch.stft(signal, n_fft=n_fft, hop_length=hop, window=window, return_complex=True, center=True)
    return spectrum.abs().square()


def log_spectral_distance(reference: torch.Tensor, test: torch.Tensor, n_fft: int = 512, hop: int = 128) -> float:
    """Log-spectral distance in dB: per frame, the RMS over frequencies of ``10 log10(P_ref / P_test)``,
    averaged over frames, channels and samples (0 when identical)."""
    eps = 1e-10
    ratio = 10 * torch.log10((_power_spectrogram(reference, n_fft, hop) + eps) / (_power_spectrogram(test, n_fft, hop) + eps))
    return float(ratio.square().mean(dim=-2).sqrt().mean())


def snr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-noise ratio in dB of ``test`` against ``reference`` per sample, averaged; inf when identical."""
    reference, test = reference.double().flatten(1), test.double().flatten(1)
    noise = (reference - test).square().sum(dim=1)
    signal = reference.square().sum(dim=1)
    values = torch.where(noise > 0, 10 * torch.log10(signal.clamp_min(1e-30) / noise.clamp_min(1e-30)), torch.full_like(noise, math.inf))
    return float(values.mean())


def fidelity(reference: torch.Tensor, test: torch.Tensor, modality: str, data_range: float = 1.0) -> dict[str, float]:
    """The metrics that fit the modality: PSNR and SSIM for images and video frames, LSD and SNR for audio."""
    if reference.shape != test.shape:
        raise ValueError(f"outputs differ in shape: {tuple(reference.shape)} vs {tuple(test.shape)}")
    if modality == "audio":
        return {"lsd_db": log_spectral_distance(reference, test), "snr_db": snr(reference, test)}
    if modality in ("image", "video"):
        return {"psnr_db": psnr(reference, test, data_range), "ssim": ssim(reference, test, data_range)}
    raise ValueError(f"unknown modality {modality!r}; expected image, video or audio")


def frechet_distance(features: torch.Tensor, reference_features: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, F]`` (as FID does with
    Inception features; here any classifier's features): ``|mu1 - mu2|² + tr(S1 + S2 - 2 (S1 S2)^½)``.

    The trace of the square root is computed from the eigenvalues of ``S1^½ S2 S1^½`` (symmetric,
    positive semi-definite), which is stable in float64 without a general matrix square root.
    """
    a, b = features.double(), reference_features.double()
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"expected two feature sets [N, F] with N >= 2 and the same F, got {tuple(a.shape)} and {tuple(b.shape)}")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0)
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * middle.sqrt().sum()
    return float(distance.clamp_min(0))
