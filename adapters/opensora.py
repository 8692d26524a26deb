"""Open-Sora: v1.2 ``STDiT3`` (spatial + temporal blocks) and 2.0 ``MMDiTModel`` (double + single stream).

Found by class name and structure; Open-Sora is never imported (it is not on PyPI).

v1.2: every ``spatial_blocks[i]`` and ``temporal_blocks[i]`` caches ``attn`` (gated by ``gate_msa``),
``cross_attn`` (added straight to the residual) and ``mlp`` (gated by ``gate_mlp``); with ``x_mask``
the block re-modulates after the module, so the module output is still the value to cache. Keys
keep the stacks apart: ``spatial.3.attn``, ``temporal.3.attn``. The timestep is the ``timestep``
argument (float in [0, 1000]); guidance doubles the batch.

2.0: attention runs inside each block's processor, not as one module call. For a double-stream
block the cached value is the pair of attention outputs ``(img_attn.proj(...), txt_attn.proj(...))``
of the joint attention, plus ``img_mlp`` and ``txt_mlp`` as ordinary components; for a
single-stream block it is ``linear2(...)``, the parallel attention+MLP branch. The adapter installs
its own processor around the block's: on a compute step it runs the block's processor unchanged
(so nothing differs when nothing is reused) and keeps the attention output; on a reuse step it
skips the projections and the attention and applies the cached value through the current step's
gate. The timestep is the ``timesteps`` argument (float in [0, 1]); guidance triples the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from smoothcache.plugins import hookimpl
from smoothcache_core import AdapterError, Component, ForwardArgument, StepSource, class_names
from smoothcache_core.adapter import GateFactory, Installer, Uninstall

_V12_PARTS = (("attn", "self_attn"), ("cross_attn", "cross_attn"), ("mlp", "ffn"))


def _has_blocks(model: nn.Module, stack: str, parts: tuple[str, ...]) -> bool:
    blocks = getattr(model, stack, None)
    return isinstance(blocks, nn.ModuleList) and all(isinstance(getattr(b, p, None), nn.Module) for b in blocks for p in parts)


def _is_stdit3(model: nn.Module) -> bool:
    parts = ("attn", "cross_attn", "mlp")
    return "STDiT3" in class_names(model) and _has_blocks(model, "spatial_blocks", parts) and _has_blocks(model, "temporal_blocks", parts)


def _is_mmdit(model: nn.Module) -> bool:
    return (
        "MMDiTModel" in class_names(model)
        and _has_blocks(model, "double_blocks", ("img_attn", "txt_attn", "img_mlp", "txt_mlp", "img_mod", "txt_mod"))
        and _has_blocks(model, "single_blocks", ("linear2", "modulation"))
    )


class _CapturingProcessor:
    """Base of the installed processors: the gated call runs the block's own processor and returns
    the outputs of the modules named in ``captured`` (the values that enter the residual stream)."""

    captured: tuple[str, ...] = ()

    def __init__(self, original: Any, make_gate: GateFactory) -> None:
        self.original = original
        self._block_output: Any = None
        self._gated = make_gate(self._compute)

    def _compute(self, block: Any, *args: Any) -> tuple[Tensor, ...]:
        outputs: dict[str, Tensor] = {}
        hooks = [
            block.get_submodule(path).register_forward_hook(lambda _m, _a, out, path=path: outputs.__setitem__(path, out))
            for path in self.captured
        ]
        try:
            self._block_output = self.original(block, *args)
        finally:
            for hook in hooks:
                hook.remove()
        return tuple(outputs[path] for path in self.captured)

    def _run(self, block: nn.Module, *args: Any) -> tuple[Any, tuple[Tensor, ...] | None]:
        """(the block's output, None) on a compute step; (None, cached values) on a reuse step."""
        self._block_output = None
        values = self._gated(block, *args)
        if self._block_output is not None:
            output, self._block_output = self._block_output, None
            return output, None
        return None, values


class _DoubleStreamProcessor(_CapturingProcessor):
    """Double-stream block with the joint attention's two output projections behind one gate."""

    captured = ("img_attn.proj", "txt_attn.proj")

    def __call__(self, block: Any, img: Tensor, txt: Tensor, vec: Tensor, pe: Any) -> tuple[Tensor, Tensor]:
        output, cached = self._run(block, img, txt, vec, pe)
        if cached is None:
            return output
        img_attn, txt_attn = cached
        img_mod1, img_mod2 = block.img_mod(vec)
        txt_mod1, txt_mod2 = block.txt_mod(vec)
        img = img + img_mod1.gate * img_attn
        img = img + img_mod2.gate * block.img_mlp((1 + img_mod2.scale) * block.img_norm2(img) + img_mod2.shift)
        txt = txt + txt_mod1.gate * txt_attn
        txt = txt + txt_mod2.gate * block.txt_mlp((1 + txt_mod2.scale) * block.txt_norm2(txt) + txt_mod2.shift)
        return img, txt


class _SingleStreamProcessor(_CapturingProcessor):
    """Single-stream block with its parallel attention + MLP branch (through ``linear2``) behind a gate."""

    captured = ("linear2",)

    def __call__(self, block: Any, x: Tensor, vec: Tensor, pe: Any) -> Tensor:
        output, cached = self._run(block, x, vec, pe)
        if cached is None:
            return output
        mod, _ = block.modulation(vec)
        return x + mod.gate * cached[0]


def _install_processor(block: nn.Module, processor_type: Callable[[Any, GateFactory], Any]) -> Installer:
    """Installer that replaces ``block.processor`` and puts the original back exactly."""

    def install(make_gate: GateFactory) -> Uninstall:
        original = getattr(block, "processor", None)
        if not callable(original):
            raise AdapterError(f"{type(block).__name__} has no processor to wrap; is this an Open-Sora 2.0 block?")
        installed = processor_type(original, make_gate)
        block.processor = installed

        def uninstall() -> None:
            if block.processor is not installed:
                raise AdapterError(f"{type(block).__name__}.processor was replaced after smoothcache wrapped it; restore it first")
            block.processor = original

        return uninstall

    return install


def _stdit3_components(model: nn.Module) -> list[Component]:
    """Both stacks, in execution order: spatial block i, then temporal block i."""
    spatial = Component.of_blocks(model.spatial_blocks, _V12_PARTS, "spatial")
    temporal = Component.of_blocks(model.temporal_blocks, _V12_PARTS, "temporal")
    return sorted(spatial + temporal, key=lambda component: component.index)


def _mmdit_components(model: Any) -> list[Component]:
    mlps = Component.of_blocks(model.double_blocks, (("img_mlp", "ffn"), ("txt_mlp", "ffn")), "double")
    components = []
    for index, block in enumerate(model.double_blocks):
        components.append(
            Component(f"double.{index}.attn", "joint_attn", "attn", "double", index, _install_processor(block, _DoubleStreamProcessor))
        )
        components.extend(mlps[2 * index : 2 * index + 2])
    for index, block in enumerate(model.single_blocks):
        components.append(
            Component(
                f"single.{index}.linear2",
                "parallel_attn_mlp",
                "linear2",
                "single",
                index,
                _install_processor(block, _SingleStreamProcessor),
            )
        )
    return components


class OpenSoraAdapter:
    """Adapter ``opensora``: STDiT3 (v1.2) and MMDiTModel (2.0)."""

    name = "opensora"

    def matches(self, model: nn.Module) -> bool:
        return _is_stdit3(model) or _is_mmdit(model)

    def components(self, model: nn.Module) -> list[Component]:
        return _stdit3_components(model) if _is_stdit3(model) else _mmdit_components(model)

    def step_source(self, model: nn.Module) -> StepSource:
        return ForwardArgument("timestep", 1) if _is_stdit3(model) else ForwardArgument("timesteps", 4)


@hookimpl
def smoothcache_adapters() -> list[OpenSoraAdapter]:
    return [OpenSoraAdapter()]
