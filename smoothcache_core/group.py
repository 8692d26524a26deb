"""Several denoisers that take turns in one generation, cached as one model with one schedule.

Wan 2.2 A14B runs ``transformer`` for the high-noise steps and ``transformer_2`` for the low-noise
ones. Wrapped as a :class:`ModelGroup`, both feed one step tracker, so a schedule (and a calibration
profile) spans the whole generation: its step ``i`` is the ``i``-th model evaluation, whichever
member ran it. The members share one architecture, so each component (``blocks.3.attn1``) is one
value of the generation, produced by whichever member runs the step: reusing it at the first step of
``transformer_2`` returns what ``transformer`` computed last, and calibration measures exactly that
change, so a schedule computes there when the experts disagree. MACs per step are those of one member's evaluation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from .adapter import Component, GateFactory, ModelAdapter, Observer, StepSource, Uninstall, unit_of
from .errors import AdapterError


def _all_or_nothing(installs: Sequence[Callable[[], Uninstall]]) -> Uninstall:
    """Run every installation; if one fails, undo those done and re-raise. Returns the undo of all."""
    undo: list[Uninstall] = []
    try:
        for install in installs:
            undo.append(install())
    except BaseException:
        for step in reversed(undo):
            step()
        raise

    def uninstall() -> None:
        for step in reversed(undo):
            step()

    return uninstall


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
        return _all_or_nothing([functools.partial(source.attach, member, observe) for member, source in self.sources.values()])


class GroupAdapter:
    """The members' adapters as one: each component shared by the members, one step source each."""

    def __init__(self, adapters: Mapping[str, ModelAdapter]) -> None:
        self.adapters = dict(adapters)
        names = sorted({adapter.name for adapter in self.adapters.values()})
        self.name = names[0] if len(names) == 1 else "+".join(names)
        units = {unit_of(adapter) for adapter in self.adapters.values()}
        if len(units) > 1:
            raise AdapterError("the denoisers of a group must cache the same unit (all components or all blocks)")
        #: What the members cache: ``"component"`` or ``"block"`` (see :mod:`smoothcache_core.blocks`).
        self.unit = units.pop()

    def _member(self, group: nn.Module, name: str) -> nn.Module:
        member = getattr(group, name, None)
        if not isinstance(member, nn.Module):
            raise AdapterError(f"the model group has no member {name!r}")
        return member

    def matches(self, model: nn.Module) -> bool:
        return (
            isinstance(model, ModelGroup)
            and set(model.members) == set(self.adapters)
            and all(adapter.matches(self._member(model, name)) for name, adapter in self.adapters.items())
        )

    def components(self, model: nn.Module) -> list[Component]:
        """One component per key, gating that key's module in every member."""
        lists = {name: adapter.components(self._member(model, name)) for name, adapter in self.adapters.items()}
        shapes = {name: [(c.key, c.kind) for c in components] for name, components in lists.items()}
        first, *others = lists
        for other in others:
            if shapes[other] != shapes[first]:
                raise AdapterError(
                    f"the denoisers {first!r} and {other!r} have different cacheable components; one schedule "
                    "cannot serve both: wrap each one on its own (smoothcache.wrap(pipe.transformer) and "
                    "smoothcache.wrap(pipe.transformer_2)) with a schedule each"
                )
        return [_shared(same) for same in zip(*lists.values(), strict=False)]

    def step_source(self, model: nn.Module) -> StepSource:
        return _GroupSource(
            {name: (self._member(model, name), adapter.step_source(self._member(model, name))) for name, adapter in self.adapters.items()}
        )


def _shared(same: tuple[Component, ...]) -> Component:
    """The component of the first member, gating its twins in the other members as well."""
    first = same[0]

    def install(make_gate: GateFactory) -> Uninstall:
        return _all_or_nothing([functools.partial(component.install, make_gate) for component in same])

    alternates = tuple(module for component in same[1:] for module in (component.module,) if module is not None)
    followers = tuple(module for component in same for module in component.followers)
    install_on = first.install_on if len(alternates) == len(same) - 1 else None  # every twin gated the same way
    return Component(
        first.key, first.kind, first.name, first.block_kind, first.index, install, first.module, followers, alternates, install_on
    )
