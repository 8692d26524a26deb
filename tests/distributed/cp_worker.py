"""Context parallelism x smoothcache, on CPU with gloo: one torchrun job runs a whole matrix of cases.

Run (2 ranks, one thread each)::

    OMP_NUM_THREADS=1 .venv/bin/python -m torch.distributed.run --nproc-per-node 2 \\
        tests/distributed/cp_worker.py --out /tmp/cp.json [--families flux,wan] [--modes ulysses,ring] \\
        [--units component,block] [--schedules compute,fora2] [--orders parallel-first,wrap-first] [--steps 6] \\
        [--calibrate] [--per-rank-generation --timeout 20]

Families: ``flux`` (FLUX.1-dev), ``wan``, ``qwen-image``, ``ltx``, ``hunyuan-video`` (the zoo's tiny
configs) and ``qwen-image-nomask`` / ``ltx-nomask`` (their padded text mask set to None). The shims of
``cp_shims.py`` are installed first (CPU has no accelerator, and ring attention needs a log-sum-exp).

Modes: ``ulysses`` / ``ring`` (diffusers' ``enable_parallelism(config=ContextParallelConfig(...))``) and
``cachedit-ulysses`` / ``cachedit-ring`` (``cache_dit.enable_cache(model, parallelism_config=ParallelismConfig(...))``
with no cache config: parallelism only). cache-dit's planners patch processor classes process-wide
(``WanAttnProcessor.__call__``), so its modes run after diffusers' ones.

For every (family, mode) the worker runs the model parallelised and unwrapped (the *baseline*), then
each (unit, schedule, order): ``parallel-first`` parallelises then wraps, ``wrap-first`` wraps then
parallelises. Each case is a short denoising loop with diffusers' ``FlowMatchEulerDiscreteScheduler``
from a fixed seed. Every rank computes the single-process reference itself (same seed, same schedule,
no parallelism) before any parallel model exists. Rank 0 writes a JSON list with, per case:

- ``max_abs_vs_single``: max |output - single-process output with the same schedule|;
- ``baseline_vs_single``: the same for the parallel baseline (the noise floor of parallelism itself);
- ``max_abs_vs_baseline`` (all-compute schedules only): against the parallel baseline (must be 0.0);
- ``stats``: per rank, ``computed`` / ``reused`` / ``refreshed`` / ``evaluations`` of the handle;
- ``unwrap``: ``"ok"`` or the error; ``after_unwrap_equal``: whether the unwrapped model's forward
  layout (instance forwards, diffusers / cache-dit hook chains, torch hooks) equals that of a model only
  parallelised, and ``after_unwrap_max_abs``: its output against the baseline's;
- ``schedule_effect``: max |single-process output with the schedule - without caching| (how far a
  wrong reuse can show);
- ``error``: where the case failed (the exception type, message and the innermost frames).

``--calibrate`` adds a row per (family, mode): ``smoothcache.calibrate`` under parallelism, per rank the
profile's largest relative deviation from one process (lag 1), whether its block-granular schedule at
the single process's median error equals the single process's, a hash of it (``ranks_agree``), and
``reduced_rel_diff_vs_single``: the same lag-1 errors measured with plain forward hooks, their
numerators and denominators summed over the CP group (the proposed fix), against one process.
``--per-rank-generation`` then lets every rank plan on its own profile and generate (ranks that
disagree deadlock until ``--timeout``); each rank writes ``<out>.rank<r>.json`` and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import traceback
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

import cp_shims

import smoothcache
from smoothcache.reference.zoo import ZooCase, all_cases, build, default_timestep, first_output

#: family -> (zoo case name, input argument dropped): tiny configs from diffusers' own tests. The
#: ``-nomask`` variants drop the padded text mask, which diffusers' ring attention applies to every
#: key chunk (it does not rotate masks) and which Ulysses cannot split for LTX (a per-head mask).
FAMILIES = {
    "flux": ("FluxTransformer2DModel[dev]", None),
    "wan": ("WanTransformer3DModel", None),
    "qwen-image": ("QwenImageTransformer2DModel", None),
    "qwen-image-nomask": ("QwenImageTransformer2DModel", "encoder_hidden_states_mask"),
    "ltx": ("LTXVideoTransformer3DModel", None),
    "ltx-nomask": ("LTXVideoTransformer3DModel", "encoder_attention_mask"),
    "hunyuan-video": ("HunyuanVideoTransformer3DModel", None),
}
MODES = ("ulysses", "ring", "cachedit-ulysses", "cachedit-ring")
UNITS = ("component", "block")
SCHEDULES = ("compute", "fora2")
ORDERS = ("parallel-first", "wrap-first")
SEED = 0


def zoo_case(family: str) -> ZooCase:
    """The zoo case of ``family`` (its inputs with the dropped argument set to None)."""
    name, dropped = FAMILIES[family]
    case = next(case for case in all_cases() if case.name == name)
    if dropped is None or case.inputs is None:
        return case
    make = case.inputs

    def inputs(generator: torch.Generator) -> dict[str, Any]:
        values = make(generator)
        values[dropped] = None
        return values

    return dataclasses.replace(case, inputs=inputs)


def denoise(model: nn.Module, case: ZooCase, steps: int) -> torch.Tensor:
    """``steps`` flow-matching Euler steps (diffusers' scheduler) from the case's seeded inputs; the final latent."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    inputs = case.inputs(torch.Generator().manual_seed(SEED))
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_t = float(t) * case.timestep_range / 1000.0
            prediction = first_output(model(**inputs, **{case.timestep: default_timestep(model_t, inputs, case.latent)}))
            inputs[case.latent] = scheduler.step(prediction, t, inputs[case.latent]).prev_sample
    return inputs[case.latent]


def schedule_for(model: nn.Module, unit: str, name: str, steps: int) -> smoothcache.Schedule | None:
    """``None`` (all-compute) or FORA-2 over every component of ``model`` at ``unit``."""
    if name == "compute":
        return None
    with smoothcache.wrap(model, unit=unit) as probe:
        keys = [component.key for component in probe.components]
    return smoothcache.Schedule.fora(steps, 2, keys)


def _describe(module: nn.Module, function: Any) -> str:
    """``class`` for the module's own bound ``forward``, else the callable's qualified name."""
    if getattr(function, "__self__", None) is module and getattr(function, "__func__", None) is type(module).forward:
        return "class"
    target = getattr(function, "func", function)  # functools.partial
    return getattr(target, "__qualname__", type(target).__name__)


def forward_layout(model: nn.Module) -> dict[str, Any]:
    """What wraps each module's forward: hook chains (diffusers' and cache-dit's), the innermost callable
    they call, an instance ``forward`` outside any registry, copy guards, and torch hook counts."""
    layout: dict[str, Any] = {}
    for path, module in model.named_modules():
        entry: dict[str, Any] = {}
        for attribute in ("_diffusers_hook", "_cache_dit_hook"):
            registry = getattr(module, attribute, None)
            if registry is not None and registry._hook_order:
                first = registry._fn_refs[0]
                innermost = first.original_forward if first.original_forward is not None else first.forward
                entry[attribute] = (list(registry._hook_order), _describe(module, innermost))
        # an instance attribute holding the module's own bound forward (what diffusers' remove_hook leaves,
        # hooks.py:262) calls exactly what the class does: not a difference
        if "forward" in module.__dict__ and not entry and _describe(module, module.__dict__["forward"]) != "class":
            entry["instance_forward"] = _describe(module, module.__dict__["forward"])
        guards = sorted(name for name in ("__deepcopy__", "__reduce_ex__") if name in module.__dict__)
        if guards:
            entry["guards"] = guards
        hooks = (len(module._forward_pre_hooks), len(module._forward_hooks))
        if hooks != (0, 0):
            entry["torch_hooks"] = hooks
        if entry:
            layout[path] = entry
    return layout


class Parallel:
    """How one mode parallelises a model (one device mesh per diffusers mode, reused by every case)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.mesh = None
        if mode in ("ulysses", "ring"):
            shape = (1, 2) if mode == "ulysses" else (2, 1)
            self.mesh = dist.device_mesh.init_device_mesh("cpu", shape, mesh_dim_names=("ring", "ulysses"))

    def __call__(self, model: nn.Module) -> nn.Module:
        if self.mode in ("ulysses", "ring"):
            from diffusers import ContextParallelConfig

            degree = {"ulysses_degree": 2} if self.mode == "ulysses" else {"ring_degree": 2}
            model.enable_parallelism(config=ContextParallelConfig(**degree, mesh=self.mesh))
            return model
        import cache_dit
        from cache_dit import ParallelismConfig

        size = {"ulysses_size": 2} if self.mode == "cachedit-ulysses" else {"ring_size": 2}
        cache_dit.enable_cache(model, parallelism_config=ParallelismConfig(**size))
        return model


def _error(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{type(error).__name__}: {str(error)[:300]} [{where}]"


def _max_abs(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    if a is None or b is None:
        return None
    if a.shape != b.shape:
        return float("nan")
    return float((a.float() - b.float()).abs().max())


def run_case(
    case: ZooCase,
    parallel: Parallel,
    unit: str,
    schedule_name: str,
    order: str,
    steps: int,
    reference: torch.Tensor,
    baseline: tuple[torch.Tensor, dict[str, Any]],
) -> dict[str, Any]:
    """One (unit, schedule, order) on a fresh model: output, stats, unwrap, layout after unwrap."""
    result: dict[str, Any] = {"unit": unit, "schedule": schedule_name, "order": order}
    model = build(case, SEED)
    handle = None
    stage = "schedule"
    try:
        schedule = schedule_for(model, unit, schedule_name, steps)
        stage = "wrap/parallelise"
        if order == "parallel-first":
            parallel(model)
            handle = smoothcache.wrap(model, schedule=schedule, unit=unit)
        else:
            handle = smoothcache.wrap(model, schedule=schedule, unit=unit)
            parallel(model)
        stage = "generate"
        output = denoise(model, case, steps)
        result["max_abs_vs_single"] = _max_abs(output, reference)
        if schedule is None:
            result["max_abs_vs_baseline"] = _max_abs(output, baseline[0])
        stats = handle.stats()
        result["stats"] = {key: stats[key] for key in ("computed", "reused", "refreshed", "evaluations", "generations")}
        stage = "unwrap"
        try:
            handle.unwrap()
            result["unwrap"] = "ok"
        except Exception as error:
            result["unwrap"] = _error(error)
        stage = "after unwrap"
        layout = forward_layout(model)
        result["after_unwrap_equal"] = layout == baseline[1]
        if not result["after_unwrap_equal"]:
            result["layout_diff"] = {
                path: (layout.get(path), baseline[1].get(path))
                for path in sorted(set(layout) | set(baseline[1]))
                if layout.get(path) != baseline[1].get(path)
            }
        result["after_unwrap_max_abs"] = _max_abs(denoise(model, case, steps), baseline[0])
    except Exception as error:
        result["error"] = f"{stage}: {_error(error)}"
    return result


def _l1_terms(model: nn.Module, keys_and_modules: list[tuple[str, nn.Module]], case: ZooCase, steps: int) -> torch.Tensor:
    """Per (component, step, sample): ``|out_step - out_{step+1}|_1`` and ``|out_{step+1}|_1`` of every
    component's output (lag 1), measured with plain torch forward hooks: ``[2, components, steps - 1, batch]``."""
    outputs: dict[str, list[torch.Tensor]] = {key: [] for key, _ in keys_and_modules}
    handles = []
    for key, module in keys_and_modules:

        def keep(_module: nn.Module, _args: Any, output: Any, key: str = key) -> None:
            tensor = output if isinstance(output, torch.Tensor) else next(t for t in output if isinstance(t, torch.Tensor))
            outputs[key].append(tensor.detach().reshape(tensor.shape[0], -1).double())

        handles.append(module.register_forward_hook(keep))
    try:
        denoise(model, case, steps)
    finally:
        for handle in handles:
            handle.remove()
    numerators = [[(s[i] - s[i + 1]).abs().sum(1) for i in range(steps - 1)] for s in outputs.values()]
    denominators = [[s[i + 1].abs().sum(1) for i in range(steps - 1)] for s in outputs.values()]
    return torch.stack([torch.stack([torch.stack(n) for n in numerators]), torch.stack([torch.stack(d) for d in denominators])])


def calibration_reference(case: ZooCase, steps: int) -> dict[str, Any]:
    """One process's calibration of ``case``: its profile, the median lag-1 error as α, the block-granular
    schedule at α, and the lag-1 L1 terms of :func:`_l1_terms`. Computed before any parallel model exists:
    cache-dit's planners patch classes process-wide (``WanAttnProcessor.__call__``,
    ``HunyuanVideoTransformer3DModel.forward``), after which an unparallelised model of that class fails."""
    model = build(case, SEED)
    profile = smoothcache.calibrate(model, lambda: denoise(model, case, steps))
    finite = profile.mean[:, 0][torch.isfinite(profile.mean[:, 0])]
    alpha = float(finite.median())
    modules = [(c.key, c.module) for c in smoothcache.resolve_adapter(model, None).components(model) if c.module is not None]
    return {
        "profile": profile,
        "alpha": alpha,
        "tables": dict(profile.schedule(alpha, granularity="block").tables),
        "terms": _l1_terms(model, modules, case, steps),
    }


def calibration_rows(family: str, case: ZooCase, parallel: Parallel, steps: int, single: dict[str, Any]) -> dict[str, Any]:
    """Calibrate under context parallelism (parallelise, then ``smoothcache.calibrate``) and compare with
    one process (``single``, from :func:`calibration_reference`): per-rank profiles and block-granular
    schedules, and the proposed fix checked with plain hooks: lag-1 relative L1 errors whose numerators
    and denominators are summed over the CP group."""
    row: dict[str, Any] = {"family": family, "mode": parallel.mode, "calibrate": True, "alpha": single["alpha"]}
    try:
        model = parallel(build(case, SEED))
        profile = smoothcache.calibrate(model, lambda: denoise(model, case, steps))
        tables = dict(profile.schedule(single["alpha"], granularity="block").tables)
        mean, single_mean = profile.mean[:, 0], single["profile"].mean[:, 0]
        both = torch.isfinite(mean) & torch.isfinite(single_mean)
        mine = {
            "mean_rel_diff_vs_single": float(((mean - single_mean).abs() / single_mean.abs().clamp_min(1e-12))[both].max()),
            "schedule_equals_single": tables == single["tables"],
            "schedule_hash": hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:16],
            "reused": sum(table.count(0) for table in tables.values()),
        }
        # the proposed fix, checked outside the library: sum numerators and denominators over the CP group
        modules = [(c.key, c.module) for c in smoothcache.resolve_adapter(model, None).components(model) if c.module is not None]
        terms = _l1_terms(model, modules, case, steps)
        group = model._parallel_config.context_parallel_config._flattened_mesh.get_group()
        dist.all_reduce(terms, group=group)
        reduced, reference = terms[0] / terms[1], single["terms"][0] / single["terms"][1]
        mine["reduced_rel_diff_vs_single"] = float(((reduced - reference).abs() / reference.abs().clamp_min(1e-12)).max())
    except Exception as error:
        mine = {"error": _error(error)}
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    row["ranks"] = gathered
    row["ranks_agree"] = len({g.get("schedule_hash") for g in gathered}) == 1
    return row


def per_rank_generation(case: ZooCase, parallel: Parallel, steps: int) -> dict[str, Any]:
    """Calibrate under context parallelism, plan on this rank's own profile, and generate with it."""
    import time

    model = parallel(build(case, SEED))
    profile = smoothcache.calibrate(model, lambda: denoise(model, case, steps))
    finite = profile.mean[:, 0][torch.isfinite(profile.mean[:, 0])]
    schedule = profile.schedule(float(finite.median()), granularity="block")
    result: dict[str, Any] = {"schedule": {key: "".join(map(str, table)) for key, table in schedule.tables.items()}}
    start = time.monotonic()
    try:
        with smoothcache.wrap(model, schedule=schedule) as handle:
            denoise(model, case, steps)
            result["stats"] = {k: handle.stats()[k] for k in ("computed", "reused")}
        result["generation"] = "ok"
    except Exception as error:
        result["generation"] = _error(error)
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def single_process_references(cases: dict[str, ZooCase], units: list[str], schedules: list[str], steps: int) -> dict[tuple, torch.Tensor]:
    """Per (family, unit, schedule): the output of one process (no parallelism) with that schedule."""
    references: dict[tuple, torch.Tensor] = {}
    for family, case in cases.items():
        plain = denoise(build(case, SEED), case, steps)
        for unit in units:
            references[(family, unit, "compute")] = plain
            for name in schedules:
                if name == "compute":
                    continue
                model = build(case, SEED)
                with smoothcache.wrap(model, schedule=schedule_for(model, unit, name, steps), unit=unit):
                    references[(family, unit, name)] = denoise(model, case, steps)
    return references


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--families", default="flux,wan,qwen-image,ltx,hunyuan-video")
    parser.add_argument("--modes", default="ulysses,ring,cachedit-ulysses")
    parser.add_argument("--units", default=",".join(UNITS))
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--calibrate", action="store_true", help="also calibrate under each mode (component unit, parallel first)")
    parser.add_argument(
        "--per-rank-generation",
        action="store_true",
        help="last: each rank calibrates under the first mode and family, wraps with its own schedule and generates; "
        "each rank writes <out>.rank<r>.json (ranks that disagree hang until --timeout), then exits without collectives",
    )
    parser.add_argument("--timeout", type=int, default=60, help="seconds a collective may wait (a deadlock becomes an error)")
    args = parser.parse_args(argv)
    families, modes = args.families.split(","), args.modes.split(",")
    units, schedules, orders = args.units.split(","), args.schedules.split(","), args.orders.split(",")

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)
    dist.init_process_group("gloo", timeout=timedelta(seconds=args.timeout))
    rank = dist.get_rank()
    cp_shims.install()
    import diffusers.utils.logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    if rank == 0:
        print(f"smoothcache from {Path(smoothcache.__file__).parent}", flush=True)
    cases = {family: zoo_case(family) for family in families}
    references = single_process_references(cases, units, schedules, args.steps)
    calibrations = {family: calibration_reference(case, args.steps) for family, case in cases.items()} if args.calibrate else {}

    rows: list[dict[str, Any]] = []
    ordered = [m for m in MODES if m in modes and not m.startswith("cachedit")] + [
        m for m in MODES if m in modes and m.startswith("cachedit")
    ]
    for mode in ordered:
        parallel = Parallel(mode)
        for family, case in cases.items():
            row_base = {"family": family, "mode": mode}
            try:
                model = parallel(build(case, SEED))
                baseline = (denoise(model, case, args.steps), forward_layout(model))
            except Exception as error:
                rows.append({**row_base, "baseline_error": _error(error)})
                dist.barrier()
                continue
            if args.calibrate:
                rows.append(calibration_rows(family, case, parallel, args.steps, calibrations[family]))
                if rank == 0:
                    print(json.dumps(rows[-1]), flush=True)
            baseline_floor = _max_abs(baseline[0], references[(family, units[0], "compute")])
            plain = references[(family, units[0], "compute")]
            for unit in units:
                for name in schedules:
                    for order in orders:
                        result = run_case(case, parallel, unit, name, order, args.steps, references[(family, unit, name)], baseline)
                        gathered: list[Any] = [None] * dist.get_world_size()
                        dist.all_gather_object(gathered, result)
                        effect = _max_abs(references[(family, unit, name)], plain)
                        row = {**row_base, "baseline_vs_single": baseline_floor, "schedule_effect": effect, **gathered[0]}
                        row["stats"] = [g.get("stats") for g in gathered]
                        if any(g.get("error") != gathered[0].get("error") for g in gathered):
                            row["errors_per_rank"] = [g.get("error") for g in gathered]
                        rows.append(row)
                        if rank == 0:
                            print(json.dumps({k: v for k, v in row.items() if k != "layout_diff"}), flush=True)
    if rank == 0:
        args.out.write_text(json.dumps(rows, indent=1, default=str))
    dist.barrier()
    if args.per_rank_generation:
        own = per_rank_generation(cases[families[0]], Parallel(ordered[0]), args.steps)
        args.out.with_suffix(f".rank{rank}.json").write_text(json.dumps({"family": families[0], "mode": ordered[0], **own}, indent=1))
        os._exit(0)  # a rank whose collectives were left unmatched cannot shut the group down cleanly
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
