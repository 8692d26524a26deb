"""Stable Audio: diffusers ``StableAudioDiTModel`` (Open 1.0), ``StableAudio3DiTModel`` (Stable Audio 3)
and stable-audio-tools ``DiffusionTransformer``.

All cache self-attention, cross-attention and the feed-forward of every block, as the paper does.

- diffusers: ``transformer_blocks[i]`` with ``attn1``, ``attn2``, ``ff``; plain pre-norm residuals
  (``h = attn1(norm1(h)) + h``). ``StableAudioPipeline`` passes the timestep positionally with
  shape [1] while the batch is 2B, so it is read from the root's second argument and the batch from
  the latents.
- stable-audio-tools: ``transformer.layers[i]`` with ``self_attn``, ``cross_attn`` (absent past
  ``final_cross_attn_ix`` or without conditioning tokens) and ``ff``; in the adaLN variant the gate
  ``sigmoid(1 - gate)`` is applied after the module, so the module output is still the value to
  cache. Classifier-free guidance happens inside ``forward`` (the batch doubles, and halves again
  outside ``cfg_interval``), so the timestep and the batch are read where they always pass:
  ``timestep_features(t[:, None])``. The model may be wrapped as is or inside its wrappers
  (``DiTWrapper``, ``ConditionedDiffusionModelWrapper``).

- Stable Audio 3: ``transformer_blocks[i]`` with ``self_attn``, ``cross_attn``, ``ff`` (gated by
  ``sigmoid(1 - gate)`` after the module), found by structure; its timestep (a sigma in [0, 1]) is
  the root's ``timestep`` argument.

Only these exact attributes are cached: never ``ff.ff`` (the Sequential inside stable-audio-tools'
``FeedForward``), ``ff.net`` or any embedder MLP.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from smoothcache.plugins import hookimpl
from smoothcache_core import AdapterError, Component, ForwardArgument, StepSource, Streams, class_names

from .streams import diffusers_block_streams
from .structure import discover_components

_DIFFUSERS_PARTS = (("attn1", "self_attn"), ("attn2", "cross_attn"), ("ff", "ffn"))
_TOOLS_PARTS = (("self_attn", "self_attn"), ("cross_attn", "cross_attn"), ("ff", "ffn"))


def _is_diffusers_stable_audio(model: nn.Module) -> bool:
    return "StableAudioDiTModel" in class_names(model)


def _is_stable_audio3(model: nn.Module) -> bool:
    return "StableAudio3DiTModel" in class_names(model)


def _is_tools_transformer(module: nn.Module) -> bool:
    """stable-audio-tools' DiffusionTransformer over a ContinuousTransformer of self_attn/ff layers."""
    if "DiffusionTransformer" not in class_names(module):
        return False
    layers = getattr(getattr(module, "transformer", None), "layers", None)
    return (
        isinstance(layers, nn.ModuleList)
        and len(layers) > 0
        and isinstance(getattr(module, "timestep_features", None), nn.Module)
        and all(
            isinstance(getattr(layer, "self_attn", None), nn.Module) and isinstance(getattr(layer, "ff", None), nn.Module)
            for layer in layers
        )
    )


def _tools_transformer_path(model: nn.Module) -> str | None:
    """Where the DiffusionTransformer sits: the model itself (``""``) or inside its wrappers."""
    for path, module in model.named_modules():
        if _is_tools_transformer(module):
            return path
    return None


class StableAudioAdapter:
    """Adapter ``stable-audio``: self-attention, cross-attention and feed-forward of every block."""

    name = "stable-audio"

    def matches(self, model: nn.Module) -> bool:
        return _is_diffusers_stable_audio(model) or _is_stable_audio3(model) or _tools_transformer_path(model) is not None

    def components(self, model: nn.Module) -> list[Component]:
        if _is_diffusers_stable_audio(model):
            return Component.of_blocks(model.transformer_blocks, _DIFFUSERS_PARTS)
        if _is_stable_audio3(model):
            return discover_components(model)
        path = _tools_transformer_path(model)
        if path is None:
            raise AdapterError(f"{type(model).__name__} is not a Stable Audio transformer; pick another adapter or let wrap() detect one")
        inner: Any = model.get_submodule(path)
        return Component.of_blocks(inner.transformer.layers, _TOOLS_PARTS)

    def step_source(self, model: nn.Module) -> StepSource:
        if _is_diffusers_stable_audio(model) or _is_stable_audio3(model):
            return ForwardArgument("timestep", 1)
        path = _tools_transformer_path(model)
        return ForwardArgument("t", 0, module_path=f"{path}.timestep_features" if path else "timestep_features")

    def block_streams(self, block: nn.Module) -> Streams | None:
        return diffusers_block_streams(block)


@hookimpl
def smoothcache_adapters() -> list[StableAudioAdapter]:
    return [StableAudioAdapter()]
