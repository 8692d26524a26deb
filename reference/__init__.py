"""smoothcache.reference: faithful re-implementations of model architectures that are not on PyPI,
and small trained reference models (``digits``, ``tones``, ``moving_digits``) whose samples can be
judged on content.

The re-implementations keep the original attribute names so original state dicts load with
``strict=True``; tests, benchmarks and the demo build them with seeded random weights or load the
shipped trained weights from ``reference/weights``.
"""

from __future__ import annotations

import hashlib

from torch import nn


def weights_digest(model: nn.Module) -> str:
    """A short SHA-256 of the model's state dict (names and float32 values, in order): which weights a
    shipped schedule was calibrated on, so a retrained model cannot silently keep a stale schedule."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
