"""Step sensitivity: how much the *final* sample moves when the components reuse at one step.

The paper's error is the relative change of a component's output between steps, and its greedy scan
treats an error of 0.05 at step 5 like one at step 45. The sample does not: errors made at noisy
steps are corrected by the denoising steps after them, errors made near the end are not. On the
trained digits DiT with DDIM 50, reusing every component at one step moves the final image 3-7x
more at steps 35-48 than at steps 1-15 per unit of component error (benchmarks/results/sensitivity.md).

A *probe* measures this directly: one generation per probed step, reusing every component at that
step only (lag 1), compared with the uncached generation. Divided by the components' mean lag-1 error
at that step it gives the step's weight; the profile multiplies each error curve by the weight of
the step where the stale value is used, so schedules spend their reuse where the sample tolerates it.

Probing *runs* (``run_lengths >= 2``) also measures reusing every component for 2, 3, ... steps in a
row from each probed step. Errors inside a run compound (each reused step feeds a stale value into a
sample that already drifted), which no per-component error shows; ``schedule(method="runs")`` plans
on these measured costs directly.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .adapter import ModelAdapter
from .blocks import at_unit
from .engine import attach, check_components, model_fingerprint
from .errors import CalibrationError, ProfileError, ScheduleError
from .gates import first_tensor
from .planning import BUDGET_TOLERANCE, _outside_the_library
from .profile import ErrorProfile
from .schedule import FILLS, Schedule

logger = logging.getLogger(__name__)


def probe_positions(steps: int, probes: int | None) -> list[int]:
    """The interior steps to probe: all of them, or ``probes`` evenly spaced (the first and last step
    are always computed, so they are never probed)."""
    interior = steps - 2
    if interior < 1:
        raise CalibrationError(f"a profile of {steps} steps has no step that can reuse; probing needs at least 3 steps")
    if probes is None or probes >= interior:
        return list(range(1, steps - 1))
    if not isinstance(probes, int) or isinstance(probes, bool) or probes < 2:
        raise CalibrationError(f"probes must be None (every step) or an integer >= 2, got {probes!r}")
    return sorted({round(v) for v in np.linspace(1, steps - 2, probes)})


def probe_runs(steps: int, probes: int | None, run_lengths: int) -> list[tuple[int, int]]:
    """The (start, length) runs to probe: every length up to ``run_lengths`` from every probed step,
    where the run ends before the last step."""
    if not isinstance(run_lengths, int) or isinstance(run_lengths, bool) or run_lengths < 1:
        raise CalibrationError(f"run_lengths must be an integer >= 1, got {run_lengths!r}")
    return [
        (start, length) for start in probe_positions(steps, probes) for length in range(1, run_lengths + 1) if start + length <= steps - 1
    ]


def _output_tensor(value: Any) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else first_tensor(value)
    if tensor is None:
        raise CalibrationError(
            f"generate() returned {type(value).__name__}; probing compares outputs, so it must return the generated "
            "tensor (e.g. lambda: pipe(..., output_type='pt').images)"
        )
    return tensor.detach().double().cpu()


def relative_l1(output: torch.Tensor, reference: torch.Tensor) -> float:
    """``‖output − reference‖₁ / ‖reference‖₁`` over the whole batch: how far a probe moved the output."""
    return float((output - reference).abs().sum() / reference.abs().sum().clamp_min(1e-12))


def per_sample_l1(output: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """:func:`relative_l1` of every sample (the leading dimension) on its own."""
    rows = reference.shape[0] if reference.dim() > 1 else 1
    differences = (output - reference).abs().reshape(rows, -1).sum(dim=1)
    return (differences / reference.abs().reshape(rows, -1).sum(dim=1).clamp_min(1e-12)).numpy()


#: How many standard errors a measured candidate must beat the selection's baseline by, per sample.
SIGNIFICANCE = 2.0


def significantly_better(errors: np.ndarray, baseline: np.ndarray) -> bool:
    """Whether per-sample ``errors`` are below ``baseline``'s by more than :data:`SIGNIFICANCE`
    standard errors of their paired difference in log (the ratio per sample: samples whose errors
    differ tenfold weigh alike, as they do in dB); with one sample there is no spread: plainly below."""
    difference = np.log(np.maximum(errors, 1e-12)) - np.log(np.maximum(baseline, 1e-12))
    if len(difference) < 2:
        return bool(difference.mean() < 0)
    spread = float(difference.std(ddof=1)) / np.sqrt(len(difference))
    return bool(difference.mean() < -SIGNIFICANCE * spread)


def check_profile_fits(profile: ErrorProfile, model: nn.Module, adapter: ModelAdapter) -> None:
    """Refuse, before any generation, a profile calibrated on another model, adapter or unit."""
    differences = []
    if profile.metadata.get("adapter") not in (None, adapter.name):
        differences.append(f"adapter {profile.metadata['adapter']!r}, not {adapter.name!r}")
    if profile.metadata.get("model_class") not in (None, type(model).__name__):
        differences.append(f"model class {profile.metadata['model_class']}, not {type(model).__name__}")
    elif profile.metadata.get("config_fingerprint") not in (None, model_fingerprint(model)):
        differences.append("another configuration of the model (config fingerprint)")
    if not differences:
        keys = [c.key for c in check_components(model, at_unit(adapter, profile.unit))]
        if keys != [c.key for c in profile.components]:
            differences.append(f"other components ({len(profile.components)} {profile.unit}s, the model has {len(keys)})")
    if differences:
        raise ProfileError(f"the profile was calibrated for {'; '.join(differences)}; calibrate this model (smoothcache.calibrate) first")


def _reference_output(model: nn.Module, adapter: ModelAdapter, generate: Callable[[], Any], steps: int) -> torch.Tensor:
    """The uncached output of ``generate()``, checked to be deterministic and to run ``steps`` steps."""
    reference = _output_tensor(generate())
    counting = attach(model, adapter, None)  # computes everything (output as unwrapped), counts the steps
    try:
        repeated = _output_tensor(generate())
        ran = counting._tracker.step + 1
    finally:
        counting.unwrap()
    if not torch.equal(repeated, reference):
        raise CalibrationError(
            "generate() gave different outputs in two calls; probing needs a deterministic generation: "
            "seed its noise with a fixed generator (e.g. generator=torch.Generator().manual_seed(0))"
        )
    if ran != steps:
        raise CalibrationError(
            f"generate() ran {ran} steps with this model but the profile has {steps}; probe with the generation that was calibrated"
        )
    return reference


def _output_with(model: nn.Module, adapter: ModelAdapter, schedule: Schedule, generate: Callable[[], Any]) -> torch.Tensor:
    """The output of ``generate()`` with ``schedule`` applied (unwrapped afterwards, also on error)."""
    handle = attach(model, adapter, schedule)
    try:
        return _output_tensor(generate())
    finally:
        handle.unwrap()


def probe(
    model: nn.Module,
    adapter: ModelAdapter,
    profile: ErrorProfile,
    generate: Callable[[], Any],
    probes: int | None = None,
    on_probe: Callable[[], None] | None = None,
    run_lengths: int = 1,
    fill: str = "reuse",
) -> ErrorProfile:
    """``profile`` with the final-output error of reusing every component for ``1..run_lengths``
    steps from each probed step.

    ``generate()`` runs one generation of the profile's number of steps with fixed seeds and returns
    its output; it is called twice uncached (the reference, and a check that it is deterministic)
    and once per probed run (:func:`probe_runs`). The model is unwrapped after every probe,
    also on error. ``fill`` is what the probed runs return at their skipped steps (a schedule planned
    on these probes fills the same way).
    """
    runs = probe_runs(profile.steps, probes, run_lengths)
    check_profile_fits(profile, model, adapter)
    adapter = at_unit(adapter, profile.unit)
    if fill not in FILLS:
        raise CalibrationError(f"fill must be one of {FILLS}, got {fill!r}")
    keys = profile.curves("type")[0]
    with torch.no_grad():
        reference = _reference_output(model, adapter, generate, profile.steps)
        sums = np.zeros((run_lengths, profile.steps))
        counts = np.zeros((run_lengths, profile.steps), dtype=np.int64)
        for start, length in runs:
            table = [1] * profile.steps
            table[start : start + length] = [0] * length
            probed = Schedule(dict.fromkeys(keys, table), {"steps": profile.steps, "unit": profile.unit}, fill)
            output = _output_with(model, adapter, probed, generate)
            sums[length - 1, start] += relative_l1(output, reference)
            counts[length - 1, start] += 1
            if on_probe is not None:
                on_probe()
    logger.debug("probed %d runs of %d steps", len(runs), profile.steps)
    return profile.with_probes(torch.from_numpy(sums), torch.from_numpy(counts), fill)


def select_schedule(
    model: nn.Module,
    adapter: ModelAdapter,
    profile: ErrorProfile,
    generate: Callable[[], Any],
    macs: float,
) -> Schedule:
    """The schedule at ``macs`` whose final output moves least on ``generate()``, among the plans
    the profile allows: ``method="runs"`` with every run length up to the probed one and
    ``"spaced-runs"`` (if probed: the latter where runs as long as the budget's interval were), the
    paper's greedy scan, and evenly spaced computes (``"uniform"``, FORA at any budget), with
    the probed fill (linear if not probed); the evenly spaced and the run plans with the other
    fills too. Which fill is best depends on the model, sampler and budget: on the reference tones
    model at 3x plain reuse beats the line, on the video model the parabola beats the line, on the
    digits with DPM-Solver the parabola loses at 3x.

    A plan rests on estimates: component errors, or probed runs measured one at a time, whose costs
    do not simply add up once several runs share a generation. Measuring each candidate once costs
    one generation per candidate and makes sure the schedule returned is not worse than a plain
    baseline on this generation. The baseline is the spaced runs plan where the profile allows it
    (the evenly spaced plan's computes, its longer runs where probed cheapest: on the six sampler
    settings of ``benchmarks/planning.py``, unseen seeds, within 1 dB of the evenly spaced plan or
    above it on all 21 points, +1.3 dB on average), else the evenly spaced plan. The candidate that
    moved least replaces the baseline only if it moved less on the generation's samples by more
    than noise (its per-sample errors below the baseline's by :data:`SIGNIFICANCE` standard errors
    of the paired log ratio): a win on one generation by chance would not hold on others, so
    generate several samples (a batch of prompts or labels). A plan that keeps more MACs than the
    evenly spaced one (or than ``macs``) by over 1 % is not a candidate: it would win by computing
    more. The candidates and their measured errors are kept in the schedule's provenance
    (``selected_from``; ``baseline`` names the plan a candidate had to beat).
    """
    check_profile_fits(profile, model, adapter)
    adapter = at_unit(adapter, profile.unit)
    fill = profile.probe_fill if profile.probed else "linear"
    plans: dict[str, dict[str, Any]] = {"uniform": {"method": "uniform", "fill": fill}}
    plans.update({f"uniform, {other}": {"method": "uniform", "fill": other} for other in FILLS if other != fill})
    plans["greedy"] = {"method": "greedy", "fill": fill}
    for length in range(1, profile.probed_run_length + 1):
        plans[f"runs, lookahead {length}"] = {"method": "runs", "lookahead": length}
    if profile.probed_run_length:
        plans["spaced runs"] = {"method": "spaced-runs"}
    candidates: dict[str, Schedule] = {}
    for name, arguments in plans.items():
        with warnings.catch_warnings(record=True) as missed:
            warnings.simplefilter("always")
            try:
                candidates[name] = profile.schedule(macs=macs, **arguments)
            except ScheduleError:
                if name != "spaced runs":  # the budget's interval needs runs longer than probed: no candidate
                    raise
        if name == "uniform" and missed:  # the baseline's miss is the user's to know; the others are filtered below
            warnings.warn(missed[0].message, stacklevel=_outside_the_library())
    for name in [name for name in candidates if "runs" in name]:  # the same runs, filled otherwise
        runs = candidates[name]
        for other in FILLS:
            if other not in ("reuse", runs.fill):
                candidates[f"{name}, {other}"] = Schedule(runs.tables, {**runs.provenance, "fill": other}, other)
    allowed = max(macs, candidates["uniform"].provenance["mac_fraction"]) + BUDGET_TOLERANCE
    candidates = {name: schedule for name, schedule in candidates.items() if schedule.provenance["mac_fraction"] <= allowed}
    with torch.no_grad():
        reference = _reference_output(model, adapter, generate, profile.steps)
        outputs = {name: _output_with(model, adapter, schedule, generate) for name, schedule in candidates.items()}
    errors = {name: relative_l1(output, reference) for name, output in outputs.items()}
    samples = {name: per_sample_l1(output, reference) for name, output in outputs.items()}
    best = min(errors, key=lambda name: errors[name])
    baseline = "spaced runs" if "spaced runs" in candidates else "uniform"
    significant = best == baseline or significantly_better(samples[best], samples[baseline])
    chosen_name = best if significant else baseline
    measured = {name: {"error": errors[name], "mac_fraction": candidates[name].provenance["mac_fraction"]} for name in candidates}
    chosen = candidates[chosen_name]
    logger.debug("selected %s among %s (least measured: %s)", chosen_name, measured, best)
    provenance = {**chosen.provenance, "selected": chosen_name, "least_measured": best, "baseline": baseline, "selected_from": measured}
    return Schedule(chosen.tables, provenance, chosen.fill)
