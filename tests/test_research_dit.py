"""facebookresearch DiT (re-implemented with its attribute names), sampled through forward_with_cfg."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REFERENCE_SCHEDULES

import smoothcache
from helpers import assert_pristine, zeros
from smoothcache.reference.dit import DiT
from smoothcache.reference.pipelines import randomize_zero_parameters


def research_dit(depth: int = 2) -> DiT:
    torch.manual_seed(0)
    model = DiT(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=depth, num_heads=2, num_classes=10)
    assert randomize_zero_parameters(model, seed=1) > 0  # adaLN-Zero gates would hide any caching error
    return model.eval()


def sample(model: DiT, steps: int, seed: int = 0, scale: float = 4.0) -> torch.Tensor:
    """DDIM-style loop over ``forward_with_cfg`` with integer timesteps, as DiT's sample.py does."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    x = torch.cat([x, x])
    y = torch.tensor([1, 2, 10, 10])  # 10 = the null class
    alphas = (1 - torch.linspace(1e-4, 0.02, 1000)).cumprod(0)
    timesteps = torch.linspace(999, 0, steps).long()
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            eps = model.forward_with_cfg(x, t.expand(len(x)), y, scale)[:, :4]
            a_t = alphas[t]
            a_prev = alphas[timesteps[i + 1]] if i + 1 < steps else torch.tensor(1.0)
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


def test_forward_with_cfg_is_tracked_through_t_embedder():
    model = research_dit()
    reference = sample(model, 10)
    with smoothcache.wrap(model) as handle:
        assert handle.adapter.name == "dit"
        assert [c.key for c in handle.components] == ["blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"]
        assert torch.equal(sample(model, 10), reference)
        assert handle.stats()["evaluations"] == 10
    assert_pristine(model)


@pytest.mark.parametrize("name", ["30-N-3-threshold-0.35.json", "50-N-2-fora.json"])
def test_original_schedules_reuse_as_published(name):
    tables = json.loads((REFERENCE_SCHEDULES / name).read_text())
    steps = len(tables["attn"])
    model = research_dit()
    reference = sample(model, steps)
    with smoothcache.wrap(model, adapter="dit", schedule=REFERENCE_SCHEDULES / name) as handle:
        cached = sample(model, steps)
        stats = handle.stats()
    assert stats["by_kind"]["self_attn"]["reused"] == zeros(tables["attn"]) * 2
    assert stats["by_kind"]["ffn"]["reused"] == zeros(tables["mlp"]) * 2
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)


def test_per_block_l2c_schedule_on_28_blocks():
    tables = json.loads((REFERENCE_SCHEDULES / "50-N-2-l2c.json").read_text())
    model = research_dit(depth=28)
    with smoothcache.wrap(model, schedule=tables) as handle:
        sample(model, 50)
        stats = handle.stats()
    assert stats["reused"] == sum(zeros(table) for table in tables.values())
    assert stats["computed"] + stats["reused"] == 50 * 28 * 2
