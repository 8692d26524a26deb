"""MAC accounting: what one model evaluation costs, what each component costs, what a schedule saves.

Counting runs one evaluation under ``torch.utils.flop_counter.FlopCounterMode`` with a counting gate
on every component (the same installers the cache uses, so components that are not a module call
are counted too). On the meta device this is free even for DiT-XL/2. One MAC = two FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from torch.utils.flop_counter import FlopCounterMode

from .adapter import Component, GateFactory
from .schedule import CompiledSchedule


@dataclass(frozen=True)
class MacCount:
    """MACs of one model evaluation: in total and per component call (keyed by component key)."""

    total: int
    components: Mapping[str, int]

    @property
    def cached_share(self) -> float:
        """Fraction of an evaluation's MACs inside cacheable components (the most caching can save)."""
        return sum(self.components.values()) / self.total if self.total else 0.0

    def for_schedule(self, compiled: CompiledSchedule, components: Sequence[Component], steps: int | None = None) -> MacReport:
        """Total MACs over a generation without cache and with ``compiled`` (no branches: per evaluation)."""
        steps = compiled.steps or steps
        if steps is None:
            raise ValueError("an all-compute schedule has no length; pass steps=")
        skipped = 0
        for component, table in zip(components, compiled.compute):
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


def count_macs(components: Sequence[Component], evaluate: Callable[[], Any]) -> MacCount:
    """Run ``evaluate`` (one model evaluation) once and count MACs in total and per component."""
    per_component = {component.key: 0 for component in components}
    counter = FlopCounterMode(display=False)

    def counting(key: str) -> GateFactory:
        def make_gate(original: Callable[..., Any]) -> Callable[..., Any]:
            def gate(*args: Any, **kwargs: Any) -> Any:
                before = counter.get_total_flops()
                output = original(*args, **kwargs)
                per_component[key] += counter.get_total_flops() - before
                return output

            return gate

        return make_gate

    uninstalls = []
    try:
        for component in components:
            uninstalls.append(component.install(counting(component.key)))
        with counter:
            evaluate()
    finally:
        for uninstall in reversed(uninstalls):
            uninstall()
    return MacCount(
        total=counter.get_total_flops() // 2,
        components={key: flops // 2 for key, flops in per_component.items()},
    )
