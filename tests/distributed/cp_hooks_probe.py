"""One process, no parallelism: smoothcache composed with diffusers' (and accelerate's) forward hooks.

    OMP_NUM_THREADS=1 .venv/bin/python tests/distributed/cp_hooks_probe.py --out /tmp/hooks.json \\
        [--families flux,wan] [--hooks ...] [--units component,block] [--schedules compute,fora2] [--orders ...]

Hooks (all on CPU): ``group-block`` / ``group-leaf`` (``apply_group_offloading``, block_level with one
block per group / leaf_level, onload and offload on CPU), ``casting`` (``enable_layerwise_casting``,
bfloat16 storage, float32 compute), ``fbc`` (``enable_cache(FirstBlockCacheConfig)``), ``pab``
(``enable_cache(PyramidAttentionBroadcastConfig)``, spatial attention every 2nd step over all timesteps),
``accelerate`` (``accelerate.cpu_offload``, which keeps the replaced forward as ``_old_forward``).

Orders: ``hooks-first`` (hooks, then ``smoothcache.wrap``) and ``wrap-first`` (wrap, then hooks), each
torn down by unwrapping then removing the hooks, or (``.../remove-first``) by removing the hooks then
unwrapping (what smoothcache's error message advises).

Per case the JSON row has ``max_abs_vs_reference``: against the same schedule without the hook (for
casting: a model whose weights are the bfloat16-rounded ones, numerically the same as casting to float32
compute); for ``fbc`` / ``pab`` against the cache alone (all-compute) or smoothcache alone (fora2),
with ``max_abs_vs_hooks_only`` (the hook alone, smoothcache all-compute); ``stats``; ``wrap`` (a refusal);
``unwrap`` / ``remove_hooks`` (ok or the error and where); ``after_equal``: the model's forward layout
after the teardown equals a fresh model's (a model with only the casting hooks for ``casting``, whose
hooks diffusers cannot remove by design); ``after_max_abs``: its output against that model's.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from cp_worker import _error, _max_abs, forward_layout, schedule_for, zoo_case

import smoothcache
from smoothcache.reference.zoo import ZooCase, build, default_timestep, first_output

HOOKS = ("group-block", "group-leaf", "casting", "fbc", "pab", "accelerate")
ORDERS = ("hooks-first", "hooks-first/remove-first", "wrap-first", "wrap-first/remove-first")
SEED = 0
#: The scheduler's current timestep (0..1000), read by Pyramid Attention Broadcast's callback.
CURRENT_TIMESTEP = [1000.0]


def denoise(model: nn.Module, case: ZooCase, steps: int) -> torch.Tensor:
    """``steps`` flow-matching Euler steps; inside ``cache_context`` when a diffusers cache is enabled."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    inputs = case.inputs(torch.Generator().manual_seed(SEED))
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(steps)
    cached = getattr(model, "is_cache_enabled", False) is True
    with torch.no_grad():
        for t in scheduler.timesteps:
            CURRENT_TIMESTEP[0] = float(t)
            timestep = default_timestep(float(t) * case.timestep_range / 1000.0, inputs, case.latent)
            if cached:
                with model.cache_context("cond"):
                    output = model(**inputs, **{case.timestep: timestep})
            else:
                output = model(**inputs, **{case.timestep: timestep})
            inputs[case.latent] = scheduler.step(first_output(output), t, inputs[case.latent]).prev_sample
    return inputs[case.latent]


def apply_hook(model: nn.Module, hook: str) -> None:
    """Put ``hook`` on ``model``."""
    cpu = torch.device("cpu")
    if hook in ("group-block", "group-leaf"):
        from diffusers.hooks import apply_group_offloading

        level = {"offload_type": "block_level", "num_blocks_per_group": 1} if hook == "group-block" else {"offload_type": "leaf_level"}
        apply_group_offloading(model, onload_device=cpu, offload_device=cpu, **level)
    elif hook == "casting":
        model.enable_layerwise_casting(storage_dtype=torch.bfloat16, compute_dtype=torch.float32)
    elif hook == "fbc":
        from diffusers.hooks import FirstBlockCacheConfig

        model.enable_cache(FirstBlockCacheConfig(threshold=0.2))
    elif hook == "pab":
        from diffusers.hooks import PyramidAttentionBroadcastConfig

        model.enable_cache(
            PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2,
                spatial_attention_timestep_skip_range=(-1, 1001),
                current_timestep_callback=lambda: CURRENT_TIMESTEP[0],
            )
        )
    elif hook == "accelerate":
        from accelerate import cpu_offload

        cpu_offload(model, execution_device=cpu)
    else:
        raise ValueError(hook)


def remove_hook(model: nn.Module, hook: str) -> None:
    """Take ``hook`` off ``model`` the way its library does (casting cannot be removed: diffusers refuses by design)."""
    if hook in ("group-block", "group-leaf"):
        from diffusers.hooks import HookRegistry

        registry = HookRegistry.check_if_exists_or_initialize(model)
        for name in ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading"):
            registry.remove_hook(name, recurse=True)
    elif hook in ("fbc", "pab"):
        model.disable_cache()
    elif hook == "accelerate":
        from accelerate.hooks import remove_hook_from_module

        remove_hook_from_module(model, recurse=True)
    elif hook == "casting":
        raise NotImplementedError("diffusers' LayerwiseCastingHook cannot be removed (deinitalize_hook raises by design)")


def _rounded_copy(case: ZooCase, hooked: nn.Module) -> nn.Module:
    """A plain model holding ``hooked``'s stored weights in float32: what layerwise casting computes with."""
    model = build(case, SEED)
    model.load_state_dict({name: value.float() for name, value in hooked.state_dict().items()})
    return model


def probe_case(case: ZooCase, hook: str, unit: str, schedule_name: str, order: str, steps: int, refs: dict[str, Any]) -> dict[str, Any]:
    """One composition; see the module docstring for the fields."""
    row: dict[str, Any] = {"hook": hook, "unit": unit, "schedule": schedule_name, "order": order}
    model = build(case, SEED)
    schedule = schedule_for(build(case, SEED), unit, schedule_name, steps)
    stage = "hooks/wrap"
    handle = None
    try:
        if order.startswith("hooks-first"):
            apply_hook(model, hook)
            try:
                handle = smoothcache.wrap(model, schedule=schedule, unit=unit)
            except smoothcache.SmoothCacheError as error:
                row["wrap"] = _error(error)
                return row
        else:
            handle = smoothcache.wrap(model, schedule=schedule, unit=unit)
            apply_hook(model, hook)
        stage = "generate"
        output = denoise(model, case, steps)
        row["max_abs_vs_reference"] = _max_abs(output, refs[f"reference/{unit}/{schedule_name}"])
        row["max_abs_vs_hooks_only"] = _max_abs(output, refs["hooks_only"])
        stats = handle.stats()
        row["stats"] = {k: stats[k] for k in ("computed", "reused", "refreshed", "evaluations", "generations")}
        steps_of_teardown: list[tuple[str, Callable[[], Any]]] = [
            ("unwrap", handle.unwrap),
            ("remove_hooks", lambda: remove_hook(model, hook)),
        ]
        if order.endswith("/remove-first"):
            steps_of_teardown.reverse()
        for name, action in steps_of_teardown:
            stage = name
            try:
                action()
                row[name] = "ok"
            except Exception as error:
                row[name] = _error(error)
        stage = "after"
        layout, expected = forward_layout(model), refs["after_layout"]
        row["after_equal"] = layout == expected
        if not row["after_equal"]:
            row["layout_diff"] = {
                p: (layout.get(p), expected.get(p)) for p in sorted(set(layout) | set(expected)) if layout.get(p) != expected.get(p)
            }
        row["after_max_abs"] = _max_abs(denoise(model, case, steps), refs["after_output"])
    except Exception as error:
        row["error"] = f"{stage}: {_error(error)}"
    return row


def references(case: ZooCase, hook: str, units: list[str], schedules: list[str], steps: int) -> dict[str, Any]:
    """What each case is compared with (see the module docstring)."""
    refs: dict[str, Any] = {}
    hooked = build(case, SEED)
    apply_hook(hooked, hook)
    refs["hooks_only"] = denoise(hooked, case, steps)
    if hook == "casting":
        refs["after_layout"], refs["after_output"] = forward_layout(hooked), refs["hooks_only"]
    else:
        plain = build(case, SEED)
        refs["after_layout"], refs["after_output"] = forward_layout(plain), denoise(plain, case, steps)
    for unit in units:
        for name in schedules:
            if hook in ("fbc", "pab"):
                base = build(case, SEED) if name != "compute" else None
                if base is None:
                    refs[f"reference/{unit}/{name}"] = refs["hooks_only"]
                    continue
            else:
                base = _rounded_copy(case, hooked) if hook == "casting" else build(case, SEED)
            with smoothcache.wrap(base, schedule=schedule_for(base, unit, name, steps), unit=unit):
                refs[f"reference/{unit}/{name}"] = denoise(base, case, steps)
    return refs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--families", default="flux,wan")
    parser.add_argument("--hooks", default=",".join(HOOKS))
    parser.add_argument("--units", default="component,block")
    parser.add_argument("--schedules", default="compute,fora2")
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import diffusers.utils.logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    units, schedules = args.units.split(","), args.schedules.split(",")
    rows = []
    for family in args.families.split(","):
        case = zoo_case(family)
        for hook in args.hooks.split(","):
            try:
                refs = references(case, hook, units, schedules, args.steps)
            except Exception as error:
                rows.append({"family": family, "hook": hook, "unit": "", "order": "", "error": f"reference: {_error(error)}"})
                continue
            for unit in units:
                for name in schedules:
                    for order in args.orders.split(","):
                        row = {"family": family, **probe_case(case, hook, unit, name, order, args.steps, refs)}
                        rows.append(row)
                        print(json.dumps({k: v for k, v in row.items() if k != "layout_diff"}), flush=True)
    args.out.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
