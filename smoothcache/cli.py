"""The ``smoothcache`` command: from a pipeline to a calibrated, validated schedule and a comparison.

MODEL is a local diffusers pipeline folder, a ``package.module:factory`` returning a pipeline, a
model or a :class:`smoothcache.workloads.Workload`, or a hub id (passed to ``from_pretrained``).
Errors are one line on stderr and a non-zero exit code; ``--debug`` shows the traceback. Argument
values, output paths and the schedule file are checked before the model is loaded (``--scheduler`` and
``--adapter``, whose names depend on the model, right after), so a typo never costs a calibration.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

import smoothcache
from smoothcache.plugins import registry
from smoothcache.workloads import Workload, WorkloadError, load
from smoothcache_core import UNITS, ErrorProfile, Schedule, SmoothCacheError
from smoothcache_core.metrics import fidelity
from smoothcache_core.schedule import FILLS, has_single_stack, type_key
from smoothcache_core.sensitivity import probe_runs

EXAMPLES = {
    "adapters": "example:\n  smoothcache adapters",
    "inspect": (
        "examples:\n  smoothcache inspect ./dit-pipeline\n  smoothcache inspect smoothcache.reference.workloads:stdit3_tiny\n"
        "  smoothcache inspect dit50.profile.safetensors"
    ),
    "calibrate": (
        "example:\n  smoothcache calibrate ./dit-pipeline --steps 50 --scheduler ddim --samples 10 "
        "--lookahead 3 -o dit50.profile.safetensors"
    ),
    "schedule": (
        "examples:\n  smoothcache schedule dit50.profile.safetensors --alpha 0.18 -o dit50.json\n"
        "  smoothcache schedule dit50.profile.safetensors --speedup 1.7 --granularity block --plot heat.png -o dit50.json\n"
        "  smoothcache schedule dit50.profile.safetensors --macs 0.5 --method optimal -o dit50-opt.json\n"
        "  smoothcache schedule dit50.profile.safetensors --macs 0.5 --steps 20 --scheduler dpm -o dpm20.json"
    ),
    "select": "example:\n  smoothcache select ./dit-pipeline dit50.profile.safetensors --macs 0.5 --scheduler ddim -o dit50.json",
    "generate": (
        "examples:\n  smoothcache generate ./dit-pipeline --schedule dit50.json --samples 4 -o out/\n"
        "  smoothcache generate ./dit-pipeline --profile dit50.profile.safetensors --macs 0.5 --steps 20 -o out/"
    ),
    "compare": "example:\n  smoothcache compare ./dit-pipeline --schedule dit50.json --samples 2 -o out/",
}


class UsageError(ValueError):
    """A bad command-line argument or output path, found before any work; one ``error:`` line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one ``error:`` line, like every other error of the command, not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _integer(text: str, kind: str, accept: Callable[[int], bool]) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {kind}, got {value}")
    return value


def _positive_integer(text: str) -> int:
    return _integer(text, "a positive integer", lambda value: value >= 1)


def _non_negative_integer(text: str) -> int:
    return _integer(text, "0 or a positive integer", lambda value: value >= 0)


def _number(text: str, kind: str, accept: Callable[[float], bool]) -> float:
    """A float that ``accept`` allows; NaN fails every comparison, so it is refused too."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {kind}, got {value}")
    return value


def _alpha(text: str) -> float:
    return _number(text, "a number >= 0", lambda value: value >= 0)


def _speedup(text: str) -> float:
    return _number(text, "a finite number >= 1 (1 = no caching)", lambda value: 1 <= value < math.inf)


def _timesteps(text: str) -> list[float]:
    values = [_number(part.strip(), "timesteps", math.isfinite) for part in text.split(",") if part.strip()]
    if len(values) < 2:
        raise argparse.ArgumentTypeError(f"timesteps must be at least two comma-separated numbers, got {text!r:.60}")
    return values


def _mac_fraction(text: str) -> float:
    return _number(text, "a fraction in (0, 1]", lambda value: 0 < value <= 1)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smoothcache",
        description="Training-free caching for Diffusion Transformers (SmoothCache).",
        epilog="example:\n  smoothcache calibrate ./dit-pipeline --steps 50 -o p.safetensors && "
        "smoothcache schedule p.safetensors --alpha 0.18 -o s.json && smoothcache compare ./dit-pipeline --schedule s.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help_text, description=help_text, epilog=EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter
        )

    def model_arguments(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("model", metavar="MODEL", help="pipeline folder, package.module:factory, or hub id")
        sub.add_argument("--prompt", help="text prompt (text-conditioned pipelines)")
        sub.add_argument("--labels", type=_non_negative_integer, nargs="+", help="class labels (class-conditional pipelines, e.g. DiT)")
        sub.add_argument("--scheduler", help="switch the pipeline's sampler: " + ", ".join(smoothcache.workloads.SCHEDULERS))
        sub.add_argument("--device", help="move the pipeline to this device (default: cuda if available, else cpu)")
        sub.add_argument("--adapter", help="adapter name (default: auto-detect)")

    command("adapters", "List registered adapters and where each comes from.")
    inspect = command(
        "inspect", "Show the detected adapter, the cacheable components and their MACs; or, given a profile file, what it plans for."
    )
    model_arguments(inspect)
    inspect.add_argument(
        "--unit",
        choices=UNITS,
        default="component",
        help="what a schedule would cache: attention and feed-forward outputs (default) or whole blocks' residuals "
        "(block: the blocks found and the share of an evaluation they hold, norms and modulation included)",
    )

    calibrate = command("calibrate", "Measure per-step output changes of every component; write an error profile.")
    model_arguments(calibrate)
    calibrate.add_argument("--steps", type=_positive_integer, help="sampling steps (default: the workload's)")
    calibrate.add_argument("--samples", type=_positive_integer, default=10, help="calibration generations, seeds 0..samples-1 (default 10)")
    calibrate.add_argument("--lookahead", type=_positive_integer, default=3, help="largest lag k measured (default 3)")
    calibrate.add_argument(
        "--probes",
        type=_non_negative_integer,
        default=0,
        help="also probe how much the output moves when reusing at N evenly spaced steps (N + 2 more generations of seed 0; "
        "N >= steps - 2 probes every step; default 0: off)",
    )
    calibrate.add_argument(
        "--run-lengths",
        type=_positive_integer,
        default=1,
        help="probe runs of reuse of 1..K steps from each probed step (K generations per step; K >= 2 enables "
        "`schedule --method runs`; default 1)",
    )
    calibrate.add_argument(
        "--fill",
        choices=FILLS,
        default="reuse",
        help="what probed runs return at skipped steps: the last computed value (default), the line through the last "
        "two or the parabola through the last three; `schedule --method runs` then fills the same way",
    )
    calibrate.add_argument(
        "--unit",
        choices=UNITS,
        default="component",
        help="what schedules from this profile cache: attention and feed-forward outputs (default) or whole blocks' "
        "residuals (block: a reused block costs one addition, so the wall-time speedup is closer to the MAC one)",
    )
    calibrate.add_argument(
        "--no-sensitivity",
        dest="sensitivity",
        action="store_false",
        help="skip the second pass over the same seeds that measures every step's sensitivity (each sample reuses at one step "
        "of its own; skipped with --probes); plans for other step counts then weigh steps by their size alone",
    )
    calibrate.add_argument("--plot", help="also write a PNG of the error curves")
    calibrate.add_argument("-o", "--output", required=True, help="profile file (.safetensors)")

    schedule = command("schedule", "Derive a schedule from a profile (no model needed).")
    schedule.add_argument("profile", metavar="PROFILE")
    target = schedule.add_mutually_exclusive_group(required=True)
    target.add_argument("--alpha", type=_alpha, help="error threshold of the greedy scan")
    target.add_argument("--speedup", type=_speedup, help="ideal (MAC) speedup to reach")
    target.add_argument("--macs", type=_mac_fraction, help="fraction of MACs to keep, in (0, 1]")
    schedule.add_argument("--granularity", choices=("type", "block"), default="type")
    grid = schedule.add_mutually_exclusive_group()
    grid.add_argument(
        "--steps",
        type=_positive_integer,
        help="plan for this many steps of the calibration's sampler (or --scheduler's), rebuilt from the profile; "
        "default: the profile's own steps",
    )
    grid.add_argument("--timesteps", type=_timesteps, help="plan for these timesteps, one per model evaluation, comma-separated")
    schedule.add_argument("--scheduler", help="with --steps, plan for this sampler: " + ", ".join(smoothcache.workloads.SCHEDULERS))
    schedule.add_argument(
        "--method",
        choices=("greedy", "optimal", "runs", "spaced-runs", "uniform"),
        help="for the profile's own steps (default greedy): greedy: the paper's scan; optimal: least component error under "
        "the MAC budget; runs: least probed "
        "final-output error of runs of reuse (needs calibrate --probes N --run-lengths 2); spaced-runs: the evenly "
        "spaced plan's run lengths, the longer runs where probed cheapest (needs runs probed as long as the interval); "
        "uniform: evenly spaced computes (FORA's interval at any budget); for --steps/--timesteps (default runs): "
        "runs, uniform or greedy",
    )
    schedule.add_argument("--lookahead", type=_positive_integer, help="use lags (runs: run lengths) up to this (default: the profile's)")
    schedule.add_argument(
        "--weighting",
        choices=("uniform", "sensitivity"),
        default="uniform",
        help="weigh every step's error alike, as the paper (default), or by the sensitivity probed with calibrate --probes",
    )
    schedule.add_argument(
        "--fill",
        choices=FILLS,
        help="what skipped steps return: the last computed value, the line through the last two or the parabola "
        "through the last three (default: runs fill as the profile was probed, the others reuse)",
    )
    schedule.add_argument("--plot", help="also write a PNG heat-map (component x step)")
    schedule.add_argument("-o", "--output", required=True, help="schedule file (.json)")

    select = command(
        "select",
        "Plan a schedule at a MAC budget by every method the profile allows, run each once on MODEL (seed --seed) and "
        "keep the one whose output moves least from uncached.",
    )
    model_arguments(select)
    select.add_argument("profile", metavar="PROFILE")
    budget = select.add_mutually_exclusive_group(required=True)
    budget.add_argument("--speedup", type=_speedup, help="ideal (MAC) speedup to reach")
    budget.add_argument("--macs", type=_mac_fraction, help="fraction of MACs to keep, in (0, 1]")
    select.add_argument("--seed", type=_non_negative_integer, default=0, help="seed of the measured generation (default 0, as probing)")
    select.add_argument("--plot", help="also write a PNG heat-map (component x step)")
    select.add_argument("-o", "--output", required=True, help="schedule file (.json)")

    for name, help_text in (
        ("generate", "Generate with a schedule; write the outputs and the cache statistics."),
        ("compare", "Cached vs uncached on the same seeds: time, MACs, fidelity and a side-by-side PNG."),
    ):
        sub = command(name, help_text)
        model_arguments(sub)
        plan = sub.add_mutually_exclusive_group(required=True)
        plan.add_argument("--schedule", help="schedule file (.json)")
        plan.add_argument("--profile", help="profile file (.safetensors): plan for whatever --steps and --scheduler at --macs/--speedup")
        budget = sub.add_mutually_exclusive_group()
        budget.add_argument("--macs", type=_mac_fraction, help="with --profile: fraction of MACs to keep, in (0, 1]")
        budget.add_argument("--speedup", type=_speedup, help="with --profile: ideal (MAC) speedup to reach")
        sub.add_argument("--steps", type=_positive_integer, help="sampling steps (default: the schedule's or profile's)")
        sub.add_argument("--samples", type=_positive_integer, default=2, help="generations, seeds SEED.. (default 2)")
        sub.add_argument("--seed", type=_non_negative_integer, default=1000, help="first seed (default 1000, unlike calibration's 0..)")
        sub.add_argument("-o", "--output", default="out", help="output folder (default out/)")
    return parser


# -- helpers ------------------------------------------------------------------------------------


def _check_folder_can_hold(option: str, given: str, folder: Path) -> None:
    """``folder`` exists and is writable, or its nearest existing ancestor is, so the write can create it."""
    ancestor = next(candidate for candidate in (folder, *folder.parents) if candidate.exists())
    if not ancestor.is_dir():
        raise UsageError(f"{option} {given!r} cannot be written: {str(ancestor)!r} is a file, not a folder; choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {given!r} cannot be written: no write permission in {str(ancestor)!r}; choose another path")


def _check_output_file(option: str, given: str, example: str) -> None:
    target = Path(os.path.realpath(given))  # the file written is the symlink's target, as write_atomic does
    if target.is_dir():
        raise UsageError(f"{option} {given!r} is a folder; give a file path, e.g. {str(Path(given, example))!r}")
    _check_folder_can_hold(option, given, target.parent)


def _check_output_folder(option: str, given: str) -> None:
    target = Path(os.path.realpath(given))
    if target.exists() and not target.is_dir():
        raise UsageError(f"{option} {given!r} is an existing file; give a folder for the outputs (created if missing)")
    _check_folder_can_hold(option, given, target)


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output path of the command is usable, checked before any work: a calibration must not end in
    a failed write. Creates nothing; the writes create missing folders."""
    if args.command in ("generate", "compare"):
        _check_output_folder("-o/--output", args.output)
    else:
        _check_output_file("-o/--output", args.output, "profile.safetensors" if args.command == "calibrate" else "schedule.json")
    if args.command in ("calibrate", "schedule", "select") and args.plot:
        _check_output_file("--plot", args.plot, "plot.png")


def _loaded(args: argparse.Namespace) -> Workload | nn.Module:
    """MODEL as a workload (on the device, with the chosen scheduler), or a bare model."""
    loaded = load(args.model, prompt=args.prompt, labels=args.labels)
    if isinstance(loaded, Workload):
        if args.scheduler:
            if loaded.set_solver is None:
                raise WorkloadError(f"--scheduler needs a diffusers pipeline; {args.model!r} chooses its own sampler")
            loaded.solver = loaded.set_solver(args.scheduler)
        if loaded.pipeline is not None:
            loaded.pipeline.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return loaded


def _workload(args: argparse.Namespace) -> Workload:
    """MODEL as a workload; a bare model cannot generate, so commands that sample refuse it."""
    loaded = _loaded(args)
    if not isinstance(loaded, Workload):
        raise WorkloadError(f"{args.model!r} is a bare model; this command needs a pipeline or a factory returning a Workload")
    return loaded


def _model_of(target: Workload | nn.Module) -> nn.Module:
    return target.model if isinstance(target, Workload) else target


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)))


def _measure_profile(workload: Workload, adapter: str | None, unit: str = "component") -> ErrorProfile:
    """A 2-step calibration: enough for MAC counts of every component and of one evaluation."""
    return smoothcache.calibrate(workload.target, lambda: workload.generate(0, 2), adapter=adapter, lookahead=1, unit=unit)


# -- commands -----------------------------------------------------------------------------------


def cmd_adapters(args: argparse.Namespace) -> None:
    """The good adapters on stdout; each skipped plugin or adapter once, as a ``warning:`` line on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the registry also warns each problem; print it once, below
        entries = registry().entries()
    _print_table(["adapter", "source"], [[e.adapter.name, e.source] for e in entries])
    for problem in registry().problems:
        print(f"warning: {problem}", file=sys.stderr)


def _inspect_profile(path: str) -> None:
    """What a profile file holds, and which grids it can plan for."""
    profile = ErrorProfile.load(path)
    meta = profile.metadata
    print(
        f"profile: {meta.get('model_class')}   adapter: {meta.get('adapter')}   unit: {profile.unit}   components: "
        f"{len(profile.components)}   steps: {profile.steps}   solver: {meta.get('solver')}   generations: {meta.get('generations')}"
    )
    if profile.timesteps is None:
        print(f"plans for: its own {profile.steps} steps only (no timesteps recorded: made before smoothcache 0.3; recalibrate)")
        return
    levels, coordinate = profile.levels, meta.get("noise_coordinate", "timestep")
    print(
        f"timesteps: {profile.timesteps[0]:.4g} .. {profile.timesteps[-1]:.4g}   noise levels ({coordinate}): "
        f"{levels.max():.2f} .. {levels.min():.2f}"
    )
    sensitivity = "measured in one pass" if meta.get("probe_kind") == "in-batch" else "probed" if profile.probed else "not measured"
    print(
        f"plans for: any grid of timesteps (any step count; samplers of {meta.get('scheduler_class') or 'the same timesteps'}), "
        f"noise levels within the range above (past it: extrapolated, warned); step sensitivity {sensitivity}"
    )


def cmd_inspect(args: argparse.Namespace) -> None:
    if args.model.endswith(".safetensors") and Path(args.model).is_file():
        _inspect_profile(args.model)
        return
    target = _loaded(args)
    model = _model_of(target)
    adapter = smoothcache.at_unit(smoothcache.resolve_adapter(model, args.adapter), args.unit)
    components = smoothcache.check_components(model, adapter)
    print(f"model: {type(model).__name__}   adapter: {adapter.name}   unit: {args.unit}   components: {len(components)}")
    macs = None
    if isinstance(target, Workload):
        profile = _measure_profile(target, args.adapter, args.unit)
        macs = dict(zip((c.key for c in profile.components), profile.macs, strict=False))
        print(f"MACs of one model evaluation: {profile.evaluation_macs:,} (measured on a 2-step generation)")
    single = has_single_stack(components)
    groups: dict[str, list] = {}
    for component in components:
        groups.setdefault(type_key(component, single), []).append(component)
    rows = []
    for key, members in groups.items():
        per_call = sum(macs[c.key] for c in members) if macs else None
        share = f"{100 * per_call / profile.evaluation_macs:.1f} %" if per_call is not None and profile.evaluation_macs else "n/a"
        rows.append([key, members[0].kind, members[0].block_kind, len(members), f"{per_call:,}" if per_call is not None else "n/a", share])
    _print_table(["type", "kind", "stack", "blocks", "MACs (all blocks)", "share of evaluation"], rows)
    if macs and profile.evaluation_macs:
        print(f"cacheable share of an evaluation: {100 * sum(macs.values()) / profile.evaluation_macs:.1f} %")
    elif not isinstance(target, Workload):
        print("MACs: n/a for a bare model; pass a pipeline or a factory returning a Workload")


def cmd_calibrate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    _check_outputs(args)
    workload = _workload(args)
    steps = args.steps or workload.default_steps
    adapter = smoothcache.resolve_adapter(workload.model, args.adapter)  # fail before the progress bar
    sensitivity = args.sensitivity and not args.probes  # probes measure the sensitivity their own way
    passes = 2 if sensitivity else 1
    with tqdm(total=passes * args.samples * steps, desc="calibrating", unit="eval", file=sys.stderr) as bar:

        def run() -> list[torch.Tensor]:
            outputs = []
            for seed in range(args.samples):
                bar.set_postfix(sample=f"{seed + 1}/{args.samples}")
                outputs.append(workload.generate(seed, steps))
            return outputs

        profile = smoothcache.calibrate(
            workload.target,
            run,
            adapter=adapter,
            lookahead=args.lookahead,
            solver=workload.solver,
            on_evaluation=bar.update,
            unit=args.unit,
            sensitivity=sensitivity,
            scheduler=workload.scheduler(steps) if workload.pipeline is None and workload.scheduler is not None else None,
        )
    if args.probes:
        probes = None if args.probes >= profile.steps - 2 else args.probes
        total = len(probe_runs(profile.steps, probes, args.run_lengths))
        with tqdm(total=total, desc="probing", unit="generation", file=sys.stderr) as bar:
            profile = smoothcache.probe(
                workload.target,
                profile,
                lambda: workload.generate(0, steps),
                adapter=adapter,
                probes=probes,
                on_probe=bar.update,
                run_lengths=args.run_lengths,
                fill=args.fill,
            )
    profile.save(args.output)
    if args.plot:
        profile.plot(args.plot)
    print(
        f"wrote {args.output}: {len(profile.components)} {profile.unit}s, {profile.steps} steps, lookahead {profile.lookahead}, "
        f"{args.samples} generations ({profile.samples} per-sample errors per step), solver {profile.metadata.get('solver')}"
        + (f", probed {profile.probed_runs} runs of up to {profile.probed_run_length} steps" if profile.probed else "")
        + (f"; plans for any steps on its {profile.metadata['noise_coordinate']} levels" if profile.timesteps is not None else "")
    )


def cmd_schedule(args: argparse.Namespace) -> None:
    _check_outputs(args)
    profile = ErrorProfile.load(args.profile)
    if args.scheduler and not args.steps:
        raise WorkloadError("--scheduler names the sampler of --steps: give --steps too")
    grid = args.timesteps or (_grid_of(profile, args.steps, args.scheduler) if args.steps else None)
    schedule = profile.schedule(
        args.alpha,
        speedup=args.speedup,
        macs=args.macs,
        granularity=args.granularity,
        method=args.method,
        lookahead=args.lookahead,
        weighting=args.weighting,
        fill=args.fill,
        timesteps=grid,
    )
    schedule.save(args.output)
    if args.plot:
        from smoothcache.plots import schedule_heatmap

        schedule_heatmap(schedule, args.plot)
    provenance = schedule.provenance
    alpha = f", alpha {provenance['alpha']:.4g}" if provenance.get("alpha") is not None else ""
    print(
        f"wrote {args.output}: {len(schedule.tables)} lists x {schedule.steps} steps ({provenance['method']}, {args.granularity}, "
        f"{provenance.get('weighting') or provenance.get('costs') or 'probed-runs'} weighting{alpha}, {schedule.fill} fill); "
        f"MAC fraction {provenance['mac_fraction']:.3f}, ideal speedup {provenance['ideal_speedup']:.2f}x"
    )


def cmd_select(args: argparse.Namespace) -> None:
    _check_outputs(args)
    profile = ErrorProfile.load(args.profile)
    workload = _workload(args)
    schedule = smoothcache.select_schedule(
        workload.target,
        profile,
        lambda: workload.generate(args.seed, profile.steps),
        macs=args.macs,
        speedup=args.speedup,
        adapter=args.adapter,
    )
    schedule.save(args.output)
    if args.plot:
        from smoothcache.plots import schedule_heatmap

        schedule_heatmap(schedule, args.plot)
    measured = ", ".join(f"{name} {entry['error']:.4g}" for name, entry in schedule.provenance["selected_from"].items())
    print(
        f"wrote {args.output}: {schedule.provenance['selected']} (relative L1 to uncached on seed {args.seed}: {measured}); "
        f"MAC fraction {schedule.provenance['mac_fraction']:.3f}, ideal speedup {schedule.provenance['ideal_speedup']:.2f}x"
    )


def _grid_of(profile: ErrorProfile, steps: int, scheduler: str | None) -> list[float]:
    """The model timesteps of ``steps`` steps of the calibration's sampler (or ``scheduler``), rebuilt
    from the scheduler config the profile recorded."""
    import diffusers

    config, name = profile.metadata.get("scheduler_config"), profile.metadata.get("scheduler_class")
    if not isinstance(config, dict) or not isinstance(name, str) or not hasattr(diffusers, name):
        raise WorkloadError(
            "the profile does not record its scheduler (calibrated without a pipeline, or before smoothcache 0.3), so it cannot "
            "rebuild another step count's grid; give --timesteps, or calibrate the pipeline"
        )
    if scheduler is not None:
        if scheduler not in smoothcache.workloads.SCHEDULERS:
            raise WorkloadError(f"unknown scheduler {scheduler!r}; choose one of {sorted(smoothcache.workloads.SCHEDULERS)}")
        name = smoothcache.workloads.SCHEDULERS[scheduler]
    solver = getattr(diffusers, name).from_config(config)
    try:
        solver.set_timesteps(steps)
    except (TypeError, ValueError) as error:  # e.g. FLUX's shift by image size: its grid depends on the call
        raise WorkloadError(f"{name} needs more than a step count for its timesteps ({error}); give --timesteps") from error
    scale = float(profile.metadata.get("timestep_scale", 1.0))
    return [scale * float(t) for t in solver.timesteps]


def _wrap_for(workload: Workload, args: argparse.Namespace, steps: int, schedule: Schedule | None) -> smoothcache.CacheHandle:
    """``workload`` wrapped with ``schedule``, or (None) planning from ``--profile`` for whatever grid
    it runs (a pipeline's scheduler tells it; a bare model's workload names its sampler's timesteps)."""
    if schedule is not None:
        return smoothcache.wrap(workload.target, adapter=args.adapter, schedule=schedule)
    timesteps = workload.timesteps(steps) if workload.pipeline is None else None
    if workload.pipeline is None and timesteps is None:
        raise WorkloadError("this model has no pipeline and its workload names no sampler, so no grid can be planned for: use --schedule")
    handle = smoothcache.wrap(workload.target, adapter=args.adapter, profile=args.profile, macs=args.macs, speedup=args.speedup)
    if timesteps is not None and handle.planner is not None:
        try:
            handle.plan_for(handle.planner.model_timesteps(timesteps))
        except BaseException:
            handle.unwrap()
            raise
    return handle


def _plan_arguments(args: argparse.Namespace) -> tuple[int, Schedule | None]:
    """Check ``--schedule`` or ``--profile`` before the model loads: the steps to generate, and the
    schedule file's schedule (None: plan from the profile)."""
    if args.profile:
        if args.macs is None and args.speedup is None:
            raise WorkloadError("--profile plans at a budget: give --macs or --speedup")
        return args.steps or ErrorProfile.load(args.profile).steps, None
    if args.macs is not None or args.speedup is not None:
        raise WorkloadError("--macs and --speedup are the budget of --profile's plans; a schedule file has its own")
    schedule, steps = _steps_for(Schedule.load(args.schedule), args)
    return steps, schedule


def _steps_for(schedule: Schedule, args: argparse.Namespace) -> tuple[Schedule, int]:
    steps = args.steps or schedule.steps
    if steps != schedule.steps:
        raise WorkloadError(
            f"the schedule has {schedule.steps} steps but --steps is {steps}; plan for {steps} steps with "
            f"`smoothcache schedule PROFILE --steps {steps}`, or generate with --profile PROFILE --macs M at any steps"
        )
    return schedule, steps


def cmd_generate(args: argparse.Namespace) -> None:
    from smoothcache.plots import to_unit_range, write_outputs

    _check_outputs(args)
    steps, schedule = _plan_arguments(args)  # a bad schedule or profile file fails before the model loads
    workload = _workload(args)
    written = []
    start = time.perf_counter()
    with _wrap_for(workload, args, steps, schedule) as handle:
        for seed in range(args.seed, args.seed + args.samples):
            output = to_unit_range(workload.generate(seed, steps).float().cpu(), workload.data_range)
            written += write_outputs(output, workload.modality, args.output, f"sample-{seed}", workload.sample_rate)
        stats = handle.stats()
    seconds = time.perf_counter() - start
    Path(args.output, "stats.json").write_text(json.dumps({**stats, "seconds": seconds}, indent=1) + "\n")
    print(
        f"wrote {len(written)} outputs to {args.output}/ in {seconds:.2f}s: "
        f"computed {stats['computed']}, reused {stats['reused']} component calls"
    )


def cmd_compare(args: argparse.Namespace) -> None:
    from smoothcache.plots import side_by_side, to_unit_range

    _check_outputs(args)
    steps, given = _plan_arguments(args)  # a bad schedule or profile file fails before the model loads
    workload = _workload(args)
    seeds = list(range(args.seed, args.seed + args.samples))
    with _wrap_for(workload, args, steps, given) as handle:  # validated once; each timed run wraps and unwraps like a user would
        workload.generate(seeds[0], steps)  # the warm-up of the cached path; a profile plans for this grid here
        schedule = handle.schedule  # the timed runs follow this very plan
    if schedule is None:
        raise WorkloadError("the wrapped model learnt no plan for this grid (see the warning above); wrap its pipeline")
    profile = _measure_profile(workload, args.adapter, schedule.unit)
    report = profile.mac_count().for_schedule(schedule.compile(profile.components), profile.components)

    def cached(seed: int) -> torch.Tensor:
        with _wrap_for(workload, args, steps, schedule):
            return workload.generate(seed, steps)

    workload.generate(seeds[0], steps)  # warm-up of the uncached path
    ratios, references, outputs = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        references.append(workload.generate(seed, steps))
        middle = time.perf_counter()
        outputs.append(cached(seed))
        ratios.append((time.perf_counter() - middle) / (middle - start))
    reference, output = torch.cat(references).float().cpu(), torch.cat(outputs).float().cpu()
    data_range = workload.data_range or float(reference.max() - reference.min())
    scores = fidelity(reference, output, workload.modality, data_range)
    time_ratio = statistics.median(ratios)
    plan_name = args.schedule or f"{args.profile} planned for {steps} steps"
    Path(args.output).mkdir(parents=True, exist_ok=True)
    figure = Path(args.output, "compare.png")
    side_by_side(
        to_unit_range(reference, workload.data_range),
        to_unit_range(output, workload.data_range, reference),
        workload.modality,
        figure,
        title=f"{type(workload.model).__name__}: {plan_name}",
    )
    result = {
        "model": args.model,
        "schedule": plan_name,
        "steps": steps,
        "seeds": seeds,
        "time_ratio": time_ratio,
        "speedup": 1 / time_ratio,
        "mac_fraction": report.fraction,
        "ideal_speedup": report.ideal_speedup,
        **scores,
    }
    Path(args.output, "compare.json").write_text(json.dumps(result, indent=1) + "\n")
    _print_table(["measure", "value"], [[key, value] for key, value in result.items() if key not in ("model", "schedule", "seeds")])
    print(f"wrote {figure} and {Path(args.output, 'compare.json')}")


COMMANDS = {
    "adapters": cmd_adapters,
    "inspect": cmd_inspect,
    "calibrate": cmd_calibrate,
    "schedule": cmd_schedule,
    "select": cmd_select,
    "generate": cmd_generate,
    "compare": cmd_compare,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (SmoothCacheError, OSError, ImportError, ValueError) as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # anything else is still one line; --debug shows where
        if args.debug:
            raise
        print(f"error: {type(error).__name__}: {error} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0
