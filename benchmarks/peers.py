"""The other training-free caches, run on the same model and the same sampling loop as smoothcache.

``benchmarks/frontier.py`` compares smoothcache with other caching methods. Their own entry points
expect a diffusers pipeline (which sets a cache context around every transformer call and knows the
step count); our loops call the transformer directly. A :class:`Peer` bridges that: ``peer.apply(model,
value, steps)`` enables one method on the model for the duration of a ``with`` block, whatever loop
calls the model inside, and afterwards the model is exactly as before (bit-identical outputs, no hook,
no instance attribute left: each method's own removal API runs first, then whatever it leaves on the
modules, such as instance ``forward`` attributes or hook registries, is removed).

Generations. A forward pre-hook on the model counts evaluations: evaluation ``k * steps`` starts a new
generation, and the method's reset API is called there, so each generation starts from a fresh cache.
``steps`` is therefore the number of model evaluations per generation (one per step for DDIM,
multistep DPM-Solver and RFLOW with guidance in one batch). The same counter gives Pyramid Attention
Broadcast its "current timestep" without reading a tensor on the host.

Peers (``PEERS``): diffusers 0.42's First Block Cache, TaylorSeer, Pyramid Attention Broadcast and
MagCache hooks; cache-dit's DBCache; the original SmoothCache 0.1.1 helper (package dit-smoothcache).
``peer.unsupported(model)`` says, in one sentence, why a method cannot run on a model. cache-dit and
dit-smoothcache are optional: without them their peers report themselves unsupported.

Calibrated peers. MagCache needs magnitude ratios measured on the same model, sampler and step count:
pass ``calibrate`` (a callable running generations with the benchmark's loop, e.g. on other seeds
than the evaluation set) to ``apply``; it runs once on entry, under MagCache's own calibration mode.
The original SmoothCache helper runs the schedules ``schedule_for(model, steps, value)`` returns;
``dataclasses.replace(peer, values=..., schedule_for=...)`` hands it the schedules smoothcache gets.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib.util
import io
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

import smoothcache

#: Resets a method's state at the start of a generation.
Reset = Callable[[], None]
#: Removes a method from the model with the method's own API.
Disable = Callable[[], None]


class _Generations:
    """Counts model evaluations; evaluation ``k * steps`` starts generation ``k``.

    Installed as a forward pre-hook on the model; calls ``on_start`` before the first evaluation of
    every generation, so a method's state never leaks from one generation into the next.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.calls = 0
        self.on_start: Reset = lambda: None

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.calls % self.steps == 0:
            self.on_start()
        self.calls += 1

    def timestep(self) -> float:
        """The generation's progress as a timestep on a 1000 scale: 1000 at the first evaluation."""
        index = (self.calls - 1) % self.steps
        return 1000.0 * (1.0 - index / self.steps)


def _state(module: nn.Module) -> tuple[dict, dict, dict, dict, dict, dict]:
    return (
        dict(vars(module)),
        dict(module._modules),
        dict(module._parameters),
        dict(module._buffers),
        dict(module._forward_pre_hooks),
        dict(module._forward_hooks),
    )


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Put every module of ``model`` back as it was: attributes, children, parameters, buffers, hooks.

    The methods' removal APIs leave traces (diffusers' ``HookRegistry.remove_hook`` and the original
    SmoothCache helper assign the bound class ``forward`` as an instance attribute, diffusers leaves a
    ``_diffusers_hook`` registry on every hooked module, cache-dit's DiT patch leaves its patched
    ``forward`` and a ``_norm1_emb`` child module); this removes them, also when enabling fails.
    """
    saved = [(module, _state(module)) for module in model.modules()]
    try:
        yield
    finally:
        for module, (attributes, children, parameters, buffers, pre_hooks, hooks) in saved:
            current = vars(module)
            for key in [key for key in current if key not in attributes]:
                del current[key]
            current.update({key: value for key, value in attributes.items() if current.get(key) is not value})
            for live, old in (
                (module._modules, children),
                (module._parameters, parameters),
                (module._buffers, buffers),
                (module._forward_pre_hooks, pre_hooks),
                (module._forward_hooks, hooks),
            ):
                if list(live) != list(old) or any(live[key] is not value for key, value in old.items()):
                    live.clear()  # also when only the order changed: cache-dit's mock.patch of the
                    live.update(old)  # block list re-inserts it last, which reorders the state dict


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _components(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """Qualified names and modules of what smoothcache caches in ``model`` (attention and FFN of every
    block): the peers that work per sub-module act on exactly these, so the comparison is per the same
    components. ``None`` when no smoothcache adapter matches, or when some component is not a
    sub-module's output (Open-Sora 2.0's joint attention lives inside a processor)."""
    try:
        adapter = smoothcache.resolve_adapter(model, None)
    except smoothcache.AdapterError:
        return None
    names = {id(module): name for name, module in model.named_modules()}
    components = adapter.components(model)
    if any(component.module is None or id(component.module) not in names for component in components):
        return None
    return [(names[id(component.module)], component.module) for component in components]


def _components_reason(model: nn.Module) -> str | None:
    """Why the per-component peers cannot hook ``model``, if so."""
    if _components(model) is not None:
        return None
    try:
        smoothcache.resolve_adapter(model, None)
    except smoothcache.AdapterError:
        return "no smoothcache adapter names the attention and FFN components of this model"
    return "it hooks sub-modules, and smoothcache's attention/FFN components of this model are not all sub-modules"


def _stdit3_order(model: nn.Module) -> list[nn.Module] | None:
    """Open-Sora v1.2 STDiT3 runs ``spatial_blocks[i]`` then ``temporal_blocks[i]``: its blocks in
    execution order, or ``None`` for a model without that layout."""
    spatial, temporal = getattr(model, "spatial_blocks", None), getattr(model, "temporal_blocks", None)
    if not isinstance(spatial, nn.ModuleList) or not isinstance(temporal, nn.ModuleList) or len(spatial) != len(temporal):
        return None
    return [block for pair in zip(spatial, temporal, strict=False) for block in pair]


def _diffusers_block_lists(model: nn.Module) -> list[str]:
    """The children in which diffusers' block-level hooks (First Block Cache, MagCache) look for blocks."""
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS

    return [
        name
        for name, child in model.named_children()
        if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, nn.ModuleList) and len(child)
    ]


def _block_hooks_reason(model: nn.Module) -> str | None:
    """Why diffusers' block-level hooks (First Block Cache, MagCache) cannot run on ``model``, if so.

    They need the blocks in execution order and, in diffusers' ``TransformerBlockRegistry``, how each
    block class returns its output. StableAudioDiTBlock (hidden states alone) and STDiT3Block (hidden
    states alone, input named ``x``; the original is found by name since Open-Sora is never imported)
    are registered here; registration is global and stays, it only describes a class.
    """
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
    from diffusers.models.transformers.stable_audio_transformer import StableAudioDiTBlock

    blocks = _stdit3_order(model) or [block for name in _diffusers_block_lists(model) for block in getattr(model, name)]
    if len(blocks) < 2:
        return "diffusers finds no list of at least two transformer blocks in this model"
    for cls in {type(block) for block in blocks}:
        try:
            TransformerBlockRegistry.get(cls)
        except ValueError:
            if cls is StableAudioDiTBlock:
                TransformerBlockRegistry.register(cls, TransformerBlockMetadata(return_hidden_states_index=0))
            elif cls.__name__ == "STDiT3Block":
                metadata = TransformerBlockMetadata(return_hidden_states_index=0, hidden_states_argument_name="x")
                TransformerBlockRegistry.register(cls, metadata)
            else:
                return f"diffusers' TransformerBlockRegistry does not know how {cls.__name__} returns its output"
    return None


def _apply_to_blocks(model: nn.Module, apply: Callable[[], None]) -> None:
    """Run a diffusers ``apply_*`` that collects blocks from the model's children by name.

    STDiT3's lists (``spatial_blocks``, ``temporal_blocks``) are not among the names diffusers looks
    for, and it interleaves them; during ``apply`` only, the model gets a ``blocks`` list in execution
    order, so the head and tail hooks land on the first and last block that actually run. The hooks
    live on the blocks, so the list is removed right after.
    """
    order = _stdit3_order(model)
    if order is None or _diffusers_block_lists(model):
        apply()
        return
    model.blocks = nn.ModuleList(order)
    try:
        apply()
    finally:
        del model.blocks


def _diffusers_hooks(model: nn.Module, apply: Callable[[], None]) -> tuple[Reset, Disable]:
    """Enable a diffusers hook-based cache and return how to reset it and remove it again.

    A pipeline would wrap each call in ``transformer.cache_context("cond")``; with guidance in one
    batch one context serves every call, so it is set once here (and again after a reset, which
    clears it). Removal uses ``HookRegistry.remove_hook`` for exactly the hooks this added.
    """
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    before = {id(module): set(module._diffusers_hook.hooks) for module in model.modules() if hasattr(module, "_diffusers_hook")}
    _apply_to_blocks(model, apply)
    root = HookRegistry.check_if_exists_or_initialize(model)
    root.invalidate_child_registries_cache()
    context = CacheContext("peers")
    _set_cache_context(model, context)

    def reset() -> None:
        root.reset_stateful_hooks(recurse=True)
        _set_cache_context(model, context)

    def disable() -> None:
        for module in model.modules():
            registry = getattr(module, "_diffusers_hook", None)
            if registry is None:
                continue
            for name in reversed([name for name in registry.hooks if name not in before.get(id(module), ())]):
                registry.remove_hook(name, recurse=False)

    return reset, disable


@dataclass(frozen=True)
class Peer:
    """One caching method, swept over one knob, enabled on a model for the duration of a context."""

    name: str
    knob: str
    values: tuple

    def unsupported(self, model: nn.Module) -> str | None:
        """``None`` if the method can run on ``model``, otherwise why not (one sentence)."""
        raise NotImplementedError

    def apply(self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None = None) -> AbstractContextManager[None]:
        """Enable the method on ``model`` at knob ``value`` for generations of ``steps`` evaluations.

        ``calibrate`` runs generations with the benchmark's loop (other seeds than the evaluation);
        MagCache calibrates on it when the context is entered, the other methods ignore it. Each
        generation inside starts from a fresh cache; the model is restored exactly on exit.
        """
        reason = self.unsupported(model)
        if reason is not None:
            raise ValueError(f"{self.name} cannot run on {type(model).__name__}: {reason}")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        return self._context(model, value, steps, calibrate)

    @contextlib.contextmanager
    def _context(self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None) -> Iterator[None]:
        with _restored(model):
            generations = _Generations(steps)
            generations.on_start, disable = self._enable(model, value, steps, calibrate, generations)
            handle = model.register_forward_pre_hook(generations, with_kwargs=True)
            try:
                yield
            finally:
                handle.remove()
                disable()

    def _enable(
        self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None, generations: _Generations
    ) -> tuple[Reset, Disable]:
        """Install the method on ``model``; return how to reset it for a new generation and how to remove it."""
        raise NotImplementedError


@dataclass(frozen=True)
class FirstBlockCache(Peer):
    """diffusers' First Block Cache: when the first block's residual changed by less than ``threshold``
    (relative mean absolute difference to the previous evaluation), reuse the other blocks' residual."""

    name: str = "diffusers FirstBlockCache"
    knob: str = "threshold"
    values: tuple = (0.03, 0.06, 0.12, 0.25, 0.5, 1.0)

    def unsupported(self, model: nn.Module) -> str | None:
        if _stdit3_order(model) is not None and not _diffusers_block_lists(model):
            return (
                "its hooks find blocks only in children named transformer_blocks/blocks/layers/... (STDiT3 has "
                "interleaved spatial_blocks and temporal_blocks) and read the block input by the literal "
                "argument name hidden_states (STDiT3Block's is x)"
            )
        return _block_hooks_reason(model)

    def _enable(
        self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None, generations: _Generations
    ) -> tuple[Reset, Disable]:
        from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

        return _diffusers_hooks(model, lambda: apply_first_block_cache(model, FirstBlockCacheConfig(threshold=value)))


@dataclass(frozen=True)
class MagCache(Peer):
    """diffusers' MagCache: skip all blocks (reusing their residual) while the accumulated error
    predicted from calibrated magnitude ratios stays under ``threshold`` (at most 3 steps in a row,
    never in the first 20 % of steps: the library's defaults)."""

    name: str = "diffusers MagCache"
    knob: str = "threshold"
    values: tuple = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)

    def unsupported(self, model: nn.Module) -> str | None:
        return _block_hooks_reason(model)

    def ratios(self, model: nn.Module, steps: int, calibrate: Callable[[], Any]) -> list[float]:
        """MagCache's calibration mode over ``calibrate()``: the magnitude ratio of the blocks' residual
        between consecutive evaluations, averaged over the generations it runs.

        diffusers prints the ratios at the end of every generation (``Copy these values to
        MagCacheConfig(mag_ratios=...)``); they are read from there.
        """
        from diffusers.hooks import MagCacheConfig, apply_mag_cache

        printed = io.StringIO()
        with _restored(model):
            _, disable = _diffusers_hooks(model, lambda: apply_mag_cache(model, MagCacheConfig(calibrate=True, num_inference_steps=steps)))
            try:
                with contextlib.redirect_stdout(printed):
                    calibrate()
            finally:
                disable()
        lines = printed.getvalue().splitlines()
        runs = [ast.literal_eval(lines[i + 1]) for i, line in enumerate(lines[:-1]) if "[MagCache] Calibration Complete" in line]
        if not runs or any(len(run) != steps for run in runs):
            raise RuntimeError(
                f"MagCache calibration expected generations of {steps} evaluations; got {len(runs)} complete generation(s) from calibrate()"
            )
        return [sum(values) / len(values) for values in zip(*runs, strict=False)]

    def _enable(
        self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None, generations: _Generations
    ) -> tuple[Reset, Disable]:
        from diffusers.hooks import MagCacheConfig, apply_mag_cache

        if calibrate is None:
            raise ValueError(
                "MagCache needs magnitude ratios calibrated on this model and sampler: "
                "pass calibrate=<callable running generations with the benchmark's loop> to apply()"
            )
        config = MagCacheConfig(threshold=value, num_inference_steps=steps, mag_ratios=self.ratios(model, steps, calibrate))
        return _diffusers_hooks(model, lambda: apply_mag_cache(model, config))


@dataclass(frozen=True)
class TaylorSeer(Peer):
    """diffusers' TaylorSeer: the attention and FFN outputs smoothcache caches are computed every
    ``cache_interval`` steps (after 3 warm-up steps) and predicted in between by a first-order Taylor
    expansion; the factors are kept in the model's dtype (the bfloat16 default would add rounding
    unrelated to the method)."""

    name: str = "diffusers TaylorSeer"
    knob: str = "cache_interval"
    values: tuple = (1, 2, 3, 4, 6, 8)

    def unsupported(self, model: nn.Module) -> str | None:
        return _components_reason(model)

    def _enable(
        self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None, generations: _Generations
    ) -> tuple[Reset, Disable]:
        from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

        config = TaylorSeerCacheConfig(
            cache_interval=value,
            cache_identifiers=[re.escape(name) for name, _ in _components(model)],
            taylor_factors_dtype=next(model.parameters()).dtype,
        )
        return _diffusers_hooks(model, lambda: apply_taylorseer_cache(model, config))


@dataclass(frozen=True)
class PyramidAttentionBroadcast(Peer):
    """diffusers' Pyramid Attention Broadcast: within timesteps (100, 800) (the library's default),
    self-attention is computed every ``spatial_range`` calls, temporal attention every 2x and
    cross-attention every 3x that (the paper's 2:4:6 pyramid), and broadcast in between.

    The current timestep is the generation's progress on a 1000 scale (1000 at the first evaluation),
    so the window covers the same part of every trajectory although the models' timestep scales
    differ (DDIM 0-999, RFLOW 0-1000, Stable Audio's preconditioned sigma in 0-1).
    """

    name: str = "diffusers PyramidAttentionBroadcast"
    knob: str = "spatial_range"
    values: tuple = (1, 2, 3, 4, 6)

    def unsupported(self, model: nn.Module) -> str | None:
        from diffusers.hooks._common import _ATTENTION_CLASSES

        if not any(isinstance(module, _ATTENTION_CLASSES) for module in model.modules()):
            return "its hooks act only on diffusers Attention modules, and this model's attention is its own class"
        return None

    def _enable(
        self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None, generations: _Generations
    ) -> tuple[Reset, Disable]:
        from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

        config = PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=value,
            temporal_attention_block_skip_range=2 * value,
            cross_attention_block_skip_range=3 * value,
            current_timestep_callback=generations.timestep,
        )
        return _diffusers_hooks(model, lambda: apply_pyramid_attention_broadcast(model, config))


#: cache-dit's registered adapters "DiT" and "StableAudio" (caching/block_adapters/adapters.py): the
#: block list, the forward pattern and, for DiT, the patch functor (the DiT forward reads
#: ``transformer_blocks[0].norm1.emb`` after the loop, which cache-dit replaces by one cached unit).
_CACHE_DIT_MODELS = {"DiTTransformer2DModel": "DiTPatchFunctor", "StableAudioDiTModel": None}


@contextlib.contextmanager
def _quiet_cache_dit() -> Iterator[None]:
    """cache-dit logs every enable and disable at INFO/WARNING to stdout; keep that to errors."""
    loggers = [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("cache_dit") or name == "CACHE_DIT"
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=False):
            logger.setLevel(level)


@dataclass(frozen=True)
class DBCache(Peer):
    """cache-dit's DBCache, F1B0 (the first block always computes and measures the change, as First
    Block Cache; no tail blocks): when the first block's residual changed by less than
    ``residual_diff_threshold``, the other blocks' residual is reused. Other settings are cache-dit's
    defaults (8 warm-up steps that always compute, no limit on cached steps)."""

    name: str = "cache-dit DBCache"
    knob: str = "residual_diff_threshold"
    values: tuple = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8)

    def unsupported(self, model: nn.Module) -> str | None:
        if not _installed("cache_dit"):
            return "cache-dit is not installed"
        if _stdit3_order(model) is not None:
            return (
                "cache-dit replaces each block list by one cached unit, so STDiT3's interleaved "
                "spatial_blocks[i]/temporal_blocks[i] loop would run all spatial blocks before all temporal "
                "ones; it would need a patch functor rewriting STDiT3.forward"
            )
        if type(model).__name__ not in _CACHE_DIT_MODELS:
            return f"cache-dit has no block adapter for {type(model).__name__} here"
        return None

    def _enable(
        self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None, generations: _Generations
    ) -> tuple[Reset, Disable]:
        import cache_dit
        from cache_dit import BlockAdapter, DBCacheConfig, ForwardPattern
        from cache_dit.caching import patch_functors

        with _quiet_cache_dit():
            functor = _CACHE_DIT_MODELS[type(model).__name__]
            adapter = BlockAdapter(
                transformer=model,
                blocks=model.transformer_blocks,
                forward_pattern=ForwardPattern.Pattern_3,
                patch_functor=getattr(patch_functors, functor)() if functor else None,
                check_forward_pattern=True,
            )
            # Without a pipeline cache-dit keeps a persistent context; it would start a new one by
            # itself after num_inference_steps evaluations, and refresh_context starts it explicitly.
            config = DBCacheConfig(
                residual_diff_threshold=value,
                Fn_compute_blocks=1,
                Bn_compute_blocks=0,
                num_inference_steps=steps,
                enable_separate_cfg=False,
            )
            cache_dit.enable_cache(adapter, cache_config=config)

        def reset() -> None:
            with _quiet_cache_dit():
                cache_dit.refresh_context(model, cache_config=copy.deepcopy(config))

        def disable() -> None:
            with _quiet_cache_dit():
                cache_dit.disable_cache(adapter)

        return reset, disable


def original_schedule(schedule: smoothcache.Schedule | Mapping[str, Any]) -> dict[str, list[int]]:
    """A smoothcache schedule in the original helper's format: ``{"attn1": [...], "ff-3": [...]}``.

    The original keys a table by attribute name, optionally ``-<block index>``. Component keys
    (``blocks.3.ff``) become ``ff-3``; stack prefixes (``spatial.attn``) are dropped, which needs the
    stacks' tables to agree, since the original cannot tell a spatial from a temporal block.
    """
    tables = smoothcache.Schedule.from_dict(schedule).tables if isinstance(schedule, Mapping) else schedule.tables
    result: dict[str, list[int]] = {}
    for key, table in tables.items():
        parts = key.split(".")
        if len(parts) >= 3 and parts[-2].isdigit():
            key = f"{parts[-1]}-{parts[-2]}"
        else:
            key = parts[-1]
        if key in result and result[key] != list(table):
            raise ValueError(
                f"the original SmoothCache helper keys tables by attribute name and block index only; "
                f"{key!r} gets two different tables from this schedule (different per stack)"
            )
        result[key] = list(table)
    return result


def fora_schedule(model: nn.Module, steps: int, interval: int) -> smoothcache.Schedule:
    """FORA: every component smoothcache caches computes every ``interval`` steps and at the last."""
    names = {name.rsplit(".", 1)[-1] for name, _ in _components(model) or ()}
    return smoothcache.Schedule.fora(steps, interval, names)


@dataclass(frozen=True)
class OriginalSmoothCache(Peer):
    """The original SmoothCache 0.1.1 helper (``SmoothCache.SmoothCacheHelper``, generic over block
    classes and component names; its ``DiffuserCacheHelper`` is the same with ``attn1`` only) running
    ``schedule_for(model, steps, value)`` on the components the schedule names.

    The default sweep is FORA's interval; replace ``values`` and ``schedule_for`` to hand it the
    schedules smoothcache gets. It prints one line per component call: those prints are silenced
    (they are replaced by a no-op in its module, so they cost nothing in a timing either).
    """

    name: str = "SmoothCache 0.1.1 helper"
    knob: str = "fora_interval"
    values: tuple = (1, 2, 3, 4, 6)
    schedule_for: Callable[[nn.Module, int, Any], smoothcache.Schedule | Mapping[str, Any]] = field(default=fora_schedule, compare=False)

    def unsupported(self, model: nn.Module) -> str | None:
        if not _installed("SmoothCache"):
            return "dit-smoothcache (module SmoothCache) is not installed"
        return _components_reason(model)

    def _enable(
        self, model: nn.Module, value: Any, steps: int, calibrate: Callable[[], Any] | None, generations: _Generations
    ) -> tuple[Reset, Disable]:
        with contextlib.redirect_stdout(io.StringIO()):  # its __init__ prints warnings about optional helpers
            from SmoothCache import SmoothCacheHelper, smooth_cache_helper

        schedule = original_schedule(self.schedule_for(model, steps, value))
        names = {re.sub(r"-\d+$", "", key) for key in schedule}
        components = [qualified.rsplit(".", 1) for qualified, _ in _components(model)]
        missing = names - {name for _, name in components}
        if missing:
            raise ValueError(f"the schedule names {sorted(missing)}, which are not cached components of {type(model).__name__}")
        block_classes = list(dict.fromkeys(type(model.get_submodule(block)) for block, name in components if name in names))
        helper = SmoothCacheHelper(model, block_classes, sorted(names), schedule)
        helper.enable()
        smooth_cache_helper.print = _no_print

        def disable() -> None:
            helper.disable()
            del smooth_cache_helper.print

        return helper.reset_state, disable


def _no_print(*args: Any, **kwargs: Any) -> None:
    """Stands in for ``print`` inside the original helper's module while a peer uses it."""


PEERS: tuple[Peer, ...] = (
    FirstBlockCache(),
    TaylorSeer(),
    PyramidAttentionBroadcast(),
    MagCache(),
    DBCache(),
    OriginalSmoothCache(),
)
