"""Several denoisers that take turns in one generation, cached as one model with one schedule.

Wan 2.2 A14B runs ``transformer`` for the high-noise steps and ``transformer_2`` for the low-noise
ones. Wrapped as a :class:`ModelGroup`, both feed one step tracker, so a schedule (and a calibration
profile) spans the whole generation: its step ``i`` is the ``i``-th model evaluation, whichever
member ran it. Component keys carry the member's name (``transformer_2.blocks.3.attn1``), so each
member keeps its own cached values.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from torch import nn

from .adapter import Component, ModelAdapter, Observer, StepSource, Uninstall
from .errors import AdapterError


class ModelGroup(nn.Module):
    """The denoisers of one pipeline by attribute name; only a container, never called itself."""

    def __init__(self, members: Mapping[str, nn.Module]) -> None:
        super().__init__()
        for name, member in members.items():
            self.add_module(name, member)
        # the group is in training mode when a member is (no .train()/.eval(): that would change the members)
        self.training = any(member.training for member in members.values())

    @property
    def members(self) -> dict[str, nn.Module]:
        return dict(self.named_children())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a ModelGroup only holds the pipeline's denoisers; call the members themselves")


class _GroupSource:
    """Every member's own step source, all feeding the same observer."""

    def __init__(self, sources: Mapping[str, tuple[nn.Module, StepSource]]) -> None:
        self.sources = sources

    def attach(self, model: nn.Module, observe: Observer) -> Uninstall:
        detach = []
        try:
            for member, source in self.sources.values():
                detach.append(source.attach(member, observe))
        except BaseException:
            for undo in reversed(detach):
                undo()
            raise

        def detach_all() -> None:
            for undo in reversed(detach):
                undo()

        return detach_all


class GroupAdapter:
    """The members' adapters as one: components prefixed by member name, one step source each."""

    def __init__(self, adapters: Mapping[str, ModelAdapter]) -> None:
        self.adapters = dict(adapters)
        names = sorted({adapter.name for adapter in self.adapters.values()})
        self.name = names[0] if len(names) == 1 else "+".join(names)

    def _member(self, group: nn.Module, name: str) -> nn.Module:
        member = getattr(group, name, None)
        if not isinstance(member, nn.Module):
            raise AdapterError(f"the model group has no member {name!r}")
        return member

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, ModelGroup) and set(model.members) == set(self.adapters) and all(
            adapter.matches(self._member(model, name)) for name, adapter in self.adapters.items()
        )

    def components(self, model: nn.Module) -> list[Component]:
        return [
            replace(component, key=f"{name}.{component.key}", block_kind=f"{name}.{component.block_kind}")
            for name, adapter in self.adapters.items()
            for component in adapter.components(self._member(model, name))
        ]

    def step_source(self, model: nn.Module) -> StepSource:
        return _GroupSource(
            {name: (self._member(model, name), adapter.step_source(self._member(model, name))) for name, adapter in self.adapters.items()}
        )
