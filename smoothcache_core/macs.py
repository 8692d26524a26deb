"""MAC accounting: what one model evaluation costs, what each component costs, what a schedule saves.

Counting runs one evaluation under ``torch.utils.flop_counter.FlopCounterMode`` with a counting gate
on every component (the same installers the cache uses, so components that are not a module call
are counted too). On the meta device this is free even for DiT-XL/2. One MAC = two FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import flop_counter as torch_flop_counter
from torch.utils.flop_counter import FlopCounterMode

from .adapter import Component, ComponentSpec, GateFactory, install_on_forward
from .schedule import CompiledSchedule


def _attention_flops(query_shape, key_shape, value_shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return torch_flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


class _NoModules:
    """Stands in for FlopCounterMode's module tracker: we need totals only, and the tracker's hooks
    fail on models that pass a parameter as a module input (``register_multi_grad_hook``)."""

    parents = ("Global",)

    def __enter__(self) -> _NoModules:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def flop_counter() -> FlopCounterMode:
    """A silent flop counter of totals that also counts the CPU flash-attention kernel, as on CUDA."""
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    custom = {cpu_attention: _attention_flops} if cpu_attention is not None else {}
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    counter.mod_tracker = _NoModules()  # type: ignore[assignment]  # duck-typed: only __enter__/__exit__ are used
    return counter


@dataclass(frozen=True)
class MacCount:
    """MACs of one model evaluation: in total and per component call (keyed by component key)."""

    total: int
    components: Mapping[str, int]

    @property
    def cached_share(self) -> float:
        """Fraction of an evaluation's MACs inside cacheable components (the most caching can save)."""
        return sum(self.components.values()) / self.total if self.total else 0.0

    def for_schedule(self, compiled: CompiledSchedule, components: Sequence[ComponentSpec], steps: int | None = None) -> MacReport:
        """Total MACs over a generation without cache and with ``compiled`` (no branches: per evaluation)."""
        steps = compiled.steps or steps
        if steps is None:
            raise ValueError("an all-compute schedule has no length; pass steps=")
        skipped = 0
        for component, table in zip(components, compiled.compute, strict=False):
            if table is not None:
                skipped += self.components[component.key] * sum(1 for compute in table if not compute)
        return MacReport(steps=steps, total=self.total * steps, skipped=skipped)


@dataclass(frozen=True)
class MacReport:
    """A schedule's compute on one model: totals over all steps, the fraction kept and the ideal speedup."""

    steps: int
    total: int
    skipped: int

    @property
    def scheduled(self) -> int:
        return self.total - self.skipped

    @property
    def fraction(self) -> float:
        return self.scheduled / self.total

    @property
    def ideal_speedup(self) -> float:
        return self.total / self.scheduled

    def as_dict(self) -> dict[str, float | int]:
        return {
            "steps": self.steps,
            "macs_total": self.total,
            "macs_scheduled": self.scheduled,
            "mac_fraction": self.fraction,
            "ideal_speedup": self.ideal_speedup,
        }


def _count_flex_attention_outside(counter: FlopCounterMode) -> Callable[[], None]:
    """While ``counter`` counts, run flex attention outside it and count its two matmuls from the
    shapes: eager flex attention cannot run under torch's flop counter (its internal compile fails,
    and keeps failing afterwards). Returns how to undo this."""
    try:
        import torch.nn.attention.flex_attention as flex_module
        from torch.utils._python_dispatch import _disable_current_modes
    except ImportError:
        return lambda: None
    original = flex_module.flex_attention

    def counted_flex_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with _disable_current_modes():
            output = original(query, key, value, *args, **kwargs)
        *batch, queries, _ = query.shape
        keys, width = key.shape[-2], value.shape[-1]
        counter.flop_counts["Global"][original] += 2 * 2 * math.prod(batch) * queries * keys * width
        return output

    flex_module.flex_attention = counted_flex_attention

    def restore() -> None:
        flex_module.flex_attention = original

    return restore


class MacMeter:
    """Attributes the flops of a counted stretch to components.

    A component may run others inside it (an installed block processor that calls gated MLPs): the
    MACs of a call are its own only, the nested components' MACs subtracted, so nothing is counted
    twice. Counting is off while ``torch.compile`` traces.
    """

    def __init__(self) -> None:
        self.counter: FlopCounterMode | None = None
        self._claimed = 0
        self._restore_flex: Callable[[], None] = lambda: None

    @property
    def active(self) -> bool:
        return self.counter is not None

    def start(self) -> None:
        if self.counter is None and not torch.compiler.is_compiling():
            self.counter = flop_counter()
            self._claimed = 0
            self._restore_flex = _count_flex_attention_outside(self.counter)
            self.counter.__enter__()

    def stop(self) -> int:
        """Stop counting; the MACs of everything run since :meth:`start`."""
        counter, self.counter = self.counter, None
        if counter is None:
            return 0
        counter.__exit__(None, None, None)
        self._restore_flex()
        return counter.get_total_flops() // 2

    def run(self, call: Callable[[], Any]) -> tuple[Any, int]:
        """Run ``call`` (one component call) while counting: its output and its own MACs."""
        counter = self.counter
        if counter is None:
            return call(), 0
        start, claimed = counter.get_total_flops(), self._claimed
        output = call()
        own = counter.get_total_flops() - start - (self._claimed - claimed)
        self._claimed += own
        return output, own // 2


def count_macs(components: Sequence[Component], evaluate: Callable[[], Any]) -> MacCount:
    """Run ``evaluate`` (one model evaluation) once and count MACs in total and per component."""
    per_component = {component.key: 0 for component in components}
    meter = MacMeter()

    def counting(key: str) -> GateFactory:
        def make_gate(original: Callable[..., Any]) -> Callable[..., Any]:
            def gate(*args: Any, **kwargs: Any) -> Any:
                output, macs = meter.run(lambda: original(*args, **kwargs))
                per_component[key] += macs
                return output

            return gate

        return make_gate

    uninstalls = []
    try:
        for component in components:
            uninstalls.append(component.install(counting(component.key)))
            uninstalls += [install_on_forward(module)(counting(component.key)) for module in component.followers]
        meter.start()
        try:
            evaluate()
        finally:
            total = meter.stop()
    finally:
        for uninstall in reversed(uninstalls):
            uninstall()
    return MacCount(total=total, components=per_component)
