"""DiT: diffusers ``DiTTransformer2DModel`` and facebookresearch DiT (``DiT`` / ``DiTBlock``).

Both cache self-attention and the feed-forward before the adaLN-Zero gate (``gate * attn(...)``),
as the paper does; a diffusers block with cross-attention (``attn2``) caches that too. The
facebookresearch model's ``forward_with_cfg`` calls ``self.forward`` directly, so no hook on the
root sees every evaluation: its timestep is read where it always passes, ``t_embedder(t)``.
"""

from __future__ import annotations

from torch import nn

from smoothcache.plugins import hookimpl
from smoothcache_core import Component, ForwardArgument, StepSource, Streams, class_names

from .streams import diffusers_block_streams

#: diffusers BasicTransformerBlock attribute -> component kind, in execution order.
_DIFFUSERS_PARTS = (("attn1", "self_attn"), ("attn2", "cross_attn"), ("ff", "ffn"))
#: facebookresearch DiTBlock attribute -> component kind, in execution order.
_RESEARCH_PARTS = (("attn", "self_attn"), ("mlp", "ffn"))


def _is_diffusers_dit(model: nn.Module) -> bool:
    return "DiTTransformer2DModel" in class_names(model)


def _is_research_dit(model: nn.Module) -> bool:
    """facebookresearch DiT (and look-alikes such as SiT): adaLN blocks with ``attn`` and ``mlp``."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        return False
    if not all(isinstance(getattr(model, name, None), nn.Module) for name in ("x_embedder", "t_embedder", "y_embedder")):
        return False
    return all(isinstance(getattr(block, part, None), nn.Module) for block in blocks for part in ("attn", "mlp", "adaLN_modulation"))


class DiTAdapter:
    """Adapter ``dit``: self-attention, cross-attention (if any) and feed-forward of every block."""

    name = "dit"

    def matches(self, model: nn.Module) -> bool:
        return _is_diffusers_dit(model) or _is_research_dit(model)

    def components(self, model: nn.Module) -> list[Component]:
        if _is_diffusers_dit(model):
            return Component.of_blocks(model.transformer_blocks, _DIFFUSERS_PARTS)
        return Component.of_blocks(model.blocks, _RESEARCH_PARTS)

    def step_source(self, model: nn.Module) -> StepSource:
        if _is_diffusers_dit(model):
            return ForwardArgument("timestep", 1)
        return ForwardArgument("t", 0, module_path="t_embedder")

    def block_streams(self, block: nn.Module) -> Streams | None:
        return diffusers_block_streams(block)


@hookimpl
def smoothcache_adapters() -> list[DiTAdapter]:
    return [DiTAdapter()]
