"""Assertions shared by the tests: the model is exactly as before, nothing of ours left behind."""

from __future__ import annotations

from torch import nn


def assert_pristine(model: nn.Module) -> None:
    """No instance ``forward`` override and no hooks anywhere in ``model``."""
    for name, module in model.named_modules():
        assert "forward" not in module.__dict__, f"{name or 'root'} still has a replaced forward"
        assert not module._forward_pre_hooks, f"{name or 'root'} still has forward pre-hooks"
        assert not module._forward_hooks, f"{name or 'root'} still has forward hooks"


def zeros(table: list[int]) -> int:
    return sum(1 for value in table if value == 0)
