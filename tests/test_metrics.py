"""Fidelity metrics against values known in closed form or from an independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smoothcache_core.metrics import fidelity, frechet_distance, log_spectral_distance, psnr, snr, ssim


def test_metrics_against_known_values():
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert psnr(image, (image + 0.1).clamp(max=10)) == pytest.approx(20.0, abs=1e-6)  # MSE 0.01
    assert ssim(image, image) == pytest.approx(1.0) and ssim(image, 1 - image) < 0
    audio = torch.randn(2, 1, 4096, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert snr(audio, audio * 1.1) == pytest.approx(20.0, abs=1e-6)  # noise 0.1 x signal
    assert log_spectral_distance(audio, audio) == 0.0
    assert log_spectral_distance(audio, audio * 10) == pytest.approx(20.0, rel=1e-6)  # 10x amplitude = 20 dB everywhere


def test_frechet_distance_matches_the_fid_formula():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(500, 16, generator=generator, dtype=torch.float64)
    b = torch.randn(400, 16, generator=generator, dtype=torch.float64) * 1.3 + 0.2
    s1, s2 = np.cov(a.numpy().T), np.cov(b.numpy().T)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum().item() + np.trace(s1 + s2 - 2 * scipy_linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_fidelity_picks_metrics_by_modality_and_checks_shapes():
    video = torch.rand(1, 3, 4, 16, 16)
    assert set(fidelity(video, video, "video")) == {"psnr_db", "ssim"}
    assert set(fidelity(torch.zeros(1, 1, 256), torch.zeros(1, 1, 256), "audio")) == {"lsd_db", "snr_db"}
    with pytest.raises(ValueError, match="differ in shape"):
        fidelity(video, video[:, :, :2], "video")
