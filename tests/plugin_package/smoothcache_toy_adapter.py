"""A complete third-party smoothcache adapter: one file, one entry point, no smoothcache internals."""

from __future__ import annotations

import torch
from torch import nn

import smoothcache


class ToyBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mix = nn.Linear(width, width)  # stands in for attention
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.gate = nn.Linear(width, 2 * width)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        gate_mix, gate_mlp = self.gate(emb).unsqueeze(1).chunk(2, dim=-1)
        x = x + gate_mix * self.mix(self.norm(x))
        return x + gate_mlp * self.mlp(self.norm(x))


class ToyDenoiser(nn.Module):
    """A tiny denoiser: ``forward(x, t)`` with x of shape (batch, tokens, width)."""

    def __init__(self, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.time = nn.Linear(1, width)
        self.layers = nn.ModuleList(ToyBlock(width) for _ in range(depth))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(t.reshape(-1, 1).float() / 1000)
        for layer in self.layers:
            x = layer(x, emb)
        return x


class ToyAdapter:
    """Cache ``mix`` and ``mlp`` of every layer; read the timestep from ``forward``'s ``t``."""

    name = "toy"

    def matches(self, model: nn.Module) -> bool:
        return type(model).__name__ == "ToyDenoiser"

    def components(self, model: nn.Module) -> list[smoothcache.Component]:
        return [
            smoothcache.Component.of_module(
                getattr(layer, name), key=f"layers.{index}.{name}", kind=kind, name=name, block_kind="layers", index=index
            )
            for index, layer in enumerate(model.layers)
            for name, kind in (("mix", "self_attn"), ("mlp", "ffn"))
        ]

    def step_source(self, model: nn.Module) -> smoothcache.ForwardArgument:
        return smoothcache.ForwardArgument("t", position=1)


@smoothcache.hookimpl
def smoothcache_adapters() -> list[ToyAdapter]:
    return [ToyAdapter()]
