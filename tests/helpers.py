"""Assertions shared by the tests: the model is exactly as before, nothing of ours left behind."""

from __future__ import annotations

from torch import nn

import smoothcache


def assert_pristine(model: nn.Module) -> None:
    """No instance ``forward`` override and no hooks anywhere in ``model``."""
    for name, module in model.named_modules():
        assert "forward" not in module.__dict__, f"{name or 'root'} still has a replaced forward"
        assert "__deepcopy__" not in module.__dict__ and "__reduce_ex__" not in module.__dict__, f"{name or 'root'} still refuses copies"
        assert not module._forward_pre_hooks, f"{name or 'root'} still has forward pre-hooks"
        assert not module._forward_hooks, f"{name or 'root'} still has forward hooks"


def zeros(table: list[int]) -> int:
    return sum(1 for value in table if value == 0)


class ProjAdapter:
    """An adapter for the small test models: caches ``model.proj``; the timestep is ``forward``'s ``t``."""

    def __init__(self, model_class: type) -> None:
        self.model_class = model_class
        self.name = model_class.__name__.lower()

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, self.model_class)

    def components(self, model: nn.Module) -> list:
        return [smoothcache.Component.of_module(model.proj, key="proj", kind="ffn", name="proj", block_kind="blocks", index=0)]

    def step_source(self, model: nn.Module) -> smoothcache.ForwardArgument:
        return smoothcache.ForwardArgument("t", 1)
