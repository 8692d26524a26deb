"""What planning costs and how well it holds on settings no schedule was made for.

On the trained digits DiT, for the two sampler settings the shipped schedules were made for and for
held-out ones (other samplers' step counts, other guidance scales), the whole user journey is run:
calibrate on seeds 0..3, probe runs of reuse (linear fill) on seed 0, plan ``method="runs"`` at
the MAC fraction of each FORA interval, and evaluate on seeds the calibration never saw (1000..),
as PSNR to the uncached output of the same seeds, against FORA with the linear fill at the same
MACs. Probing is run three ways, from the same calibration:

- ``full``: every other interior step probed, runs of 1..3 steps (what the shipped profiles do);
- ``two seeds``: the same probes on seeds 0 and 1, their costs averaged (a robust estimate);
- ``cheap``: 6 probed steps, runs of 1..3, the rest interpolated.

and ``selected``: :func:`smoothcache.select_schedule` on the full profile, which measures each
plan it allows (runs with every lookahead, greedy, evenly spaced) once on calibration seed 0 (ten
samples) and keeps the one whose output moved least if it beat the evenly spaced plan beyond noise
(two standard errors of the per-sample difference), else the evenly spaced plan. ``selected
(blocks)`` is the same journey with whole blocks cached (``unit="block"``: its own calibration and
full probing).

Each plan's cost is reported in generations and as wall time relative to one uncached generation.
FORA + linear fill and both selections are also timed (one evaluation seed, variants interleaved,
the median over rounds of each one's ratio to the uncached generation of the same round), so each
setting is compared at equal wall time too.

Run: ``python -m benchmarks.planning [--settings ddim-50 ...]``. Writes benchmarks/results/planning.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import torch

import smoothcache
from benchmarks.common import RESULTS, interleaved_times, machine, paired_ratio, print_table, timed, write_results
from benchmarks.equal_time import equal_time_cell
from smoothcache.reference import digits
from smoothcache_core.metrics import psnr
from smoothcache_core.sensitivity import probe_runs

CALIBRATION_SEEDS = (0, 1, 2, 3)
EVALUATION_SEEDS = (1000, 1001, 1002)
FORA_INTERVALS = (2, 3, 4)
RUN_LENGTHS = 3
CHEAP_PROBES = 6
#: Rounds of the interleaved timing, and the wall-time speedups the families are compared at.
TIME_ROUNDS = 5
TIME_SPEEDUPS = (2.0, 2.5)
#: The families timed, by their column in a point.
TIMED_FAMILIES = ("FORA + linear fill", "selected", "selected (blocks)")


@dataclass(frozen=True)
class Setting:
    """One sampler setting of the digits DiT."""

    name: str
    scheduler: str
    steps: int
    guidance: float
    held_out: bool  # no shipped schedule was made for it


SETTINGS = (
    Setting("ddim-50", "ddim", 50, 3.0, held_out=False),
    Setting("dpm-25", "dpm", 25, 3.0, held_out=False),
    Setting("ddim-20", "ddim", 20, 3.0, held_out=True),
    Setting("ddim-30-g5", "ddim", 30, 5.0, held_out=True),
    Setting("dpm-20-g2", "dpm", 20, 2.0, held_out=True),
    Setting("dpm-30-g4", "dpm", 30, 4.0, held_out=True),
)


def measure(setting: Setting, model: torch.nn.Module, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """Calibrate, probe three ways, plan at FORA's MAC fractions and evaluate on unseen seeds; with
    ``stored`` (this setting's earlier result), probe only the full way and keep the stored
    numbers of the other two (a re-run for a changed selection)."""

    def generate(seed: int) -> torch.Tensor:
        labels = list(range(digits.NUM_CLASSES))
        return digits.sample_digits(model, labels, setting.steps, setting.scheduler, seed, setting.guidance)

    generation_s = sorted(timed(lambda: generate(0))[1] for _ in range(3))[1]
    calibrated, calibration_s = timed(
        lambda: smoothcache.calibrate(model, lambda: [generate(seed) for seed in CALIBRATION_SEEDS], solver=setting.scheduler)
    )
    every_other = (setting.steps - 2) // 2

    def probed(profile: smoothcache.ErrorProfile, probes: int, seed: int) -> tuple[smoothcache.ErrorProfile, float]:
        return timed(
            lambda: smoothcache.probe(model, profile, lambda: generate(seed), probes=probes, run_lengths=RUN_LENGTHS, fill="linear")
        )

    full, full_s = probed(calibrated, every_other, 0)
    blocks_calibrated, blocks_calibration_s = timed(
        lambda: smoothcache.calibrate(model, lambda: [generate(seed) for seed in CALIBRATION_SEEDS], solver=setting.scheduler, unit="block")
    )
    blocks, blocks_probe_s = probed(blocks_calibrated, every_other, 0)
    profiles = {"full": (full, full_s)}
    if stored is None:
        two_seeds, second_s = probed(full, every_other, 1)
        cheap, cheap_s = probed(calibrated, CHEAP_PROBES, 0)
        profiles.update({"two seeds": (two_seeds, full_s + second_s), "cheap": (cheap, cheap_s)})
    probe_generations = {
        "full": len(probe_runs(setting.steps, every_other, RUN_LENGTHS)),
        "two seeds": 2 * len(probe_runs(setting.steps, every_other, RUN_LENGTHS)),
        "cheap": len(probe_runs(setting.steps, CHEAP_PROBES, RUN_LENGTHS)),
    }

    references = {seed: generate(seed) for seed in EVALUATION_SEEDS}

    def fidelity(schedule: smoothcache.Schedule) -> float:
        with smoothcache.wrap(model, schedule=schedule):
            outputs = {seed: generate(seed) for seed in EVALUATION_SEEDS}
        return psnr(torch.cat(list(references.values())), torch.cat(list(outputs.values())))

    keys = full.curves("type")[0]
    points = []
    schedules: dict[str, smoothcache.Schedule] = {}
    for index, interval in enumerate(FORA_INTERVALS):
        fora = smoothcache.Schedule.fora(setting.steps, interval, keys, fill="linear")
        fraction = full.mac_report(fora).fraction
        point: dict[str, Any] = {} if stored is None else dict(stored["points"][index])
        point.update({"fora_interval": interval, "mac_fraction": fraction, "FORA + linear fill": fidelity(fora)})
        for name, (profile, _) in profiles.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                schedule = profile.schedule(macs=fraction, method="runs")
            point[f"runs ({name})"] = fidelity(schedule)
            point[f"runs ({name}) mac_fraction"] = schedule.provenance["mac_fraction"]
            if caught:
                point[f"runs ({name}) warning"] = str(caught[0].message)
        selected = smoothcache.select_schedule(model, full, lambda: generate(0), macs=fraction)
        point["selected"] = fidelity(selected)
        point["selected plan"] = selected.provenance["selected"]
        point["least measured"] = selected.provenance["least_measured"]
        point["selected from"] = {name: dict(entry) for name, entry in selected.provenance["selected_from"].items()}
        blocks_selected = smoothcache.select_schedule(model, blocks, lambda: generate(0), macs=fraction)
        point["selected (blocks)"] = fidelity(blocks_selected)
        point["selected (blocks) plan"] = blocks_selected.provenance["selected"]
        point["selected (blocks) mac_fraction"] = blocks.mac_report(blocks_selected).fraction
        for family, schedule in zip(TIMED_FAMILIES, (fora, selected, blocks_selected), strict=True):
            schedules[f"{family} {interval}"] = schedule
        points.append(point)

    def run(schedule: smoothcache.Schedule) -> None:
        with smoothcache.wrap(model, schedule=schedule):
            generate(EVALUATION_SEEDS[0])

    variants = {"uncached": lambda: generate(EVALUATION_SEEDS[0])} | {name: lambda s=s: run(s) for name, s in schedules.items()}
    times = interleaved_times(variants, TIME_ROUNDS)
    for point in points:
        for family in TIMED_FAMILIES:
            point[f"{family} time_ratio"] = paired_ratio(times, f"{family} {point['fora_interval']}", "uncached")
    return {
        "setting": setting.__dict__,
        "generation_seconds": generation_s,
        "calibration": {
            "generations": len(CALIBRATION_SEEDS),
            "seconds": calibration_s,
            "generations_equivalent": calibration_s / generation_s,
        },
        "probing": {
            **({} if stored is None else stored["probing"]),
            **{
                name: {
                    "probe_generations": probe_generations[name],
                    "seconds": seconds,
                    "plan_cost_in_generations": (calibration_s + seconds) / generation_s,
                }
                for name, (profile, seconds) in profiles.items()
            },
        },
        "blocks": {
            "calibration_seconds": blocks_calibration_s,
            "probe_seconds": blocks_probe_s,
            "plan_cost_in_generations": (blocks_calibration_s + blocks_probe_s) / generation_s,
        },
        "time_rounds": TIME_ROUNDS,
        "points": points,
    }


def equal_time_rows(results: dict[str, Any]) -> list[list[str]]:
    """Per timed setting, each timed family's PSNR at each wall-time speedup of :data:`TIME_SPEEDUPS`
    (interpolated between its three timed points, as the frontier's equal-time tables)."""
    rows = []
    for name, result in results.items():
        if "time_rounds" not in result:
            continue
        row = [name + (" (held out)" if result["setting"]["held_out"] else "")]
        for speedup in TIME_SPEEDUPS:
            for family in TIMED_FAMILIES:
                points = [{"time_ratio": p[f"{family} time_ratio"], "psnr": p[family]} for p in result["points"]]
                row.append(equal_time_cell(points, speedup, "psnr"))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=[s.name for s in SETTINGS], help="run these settings only")
    parser.add_argument(
        "--keep-other-probing",
        action="store_true",
        help="probe only the full way and keep the stored two-seed and cheap results (a re-run for a changed selection)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    model = digits.load_digits_dit()
    stored = RESULTS / "planning.json"
    results: dict[str, Any] = json.loads(stored.read_text())["settings"] if stored.exists() else {}
    for setting in SETTINGS:
        if args.settings and setting.name not in args.settings:
            continue
        stored_result = results.get(setting.name) if args.keep_other_probing else None
        results[setting.name] = measure(setting, model, stored_result)  # settings run now replace their stored results
        print(f"{setting.name}: done", flush=True)
    rows = []
    for name, result in results.items():
        for point in result["points"]:
            rows.append(
                [
                    name + (" (held out)" if result["setting"]["held_out"] else ""),
                    f"{point['mac_fraction']:.3f}",
                    point["FORA + linear fill"],
                    point["runs (full)"],
                    point["runs (two seeds)"],
                    point["runs (cheap)"],
                    point["selected"],
                    point["selected plan"],
                    point.get("selected (blocks)", "not run"),
                    point.get("selected (blocks) plan", ""),
                ]
            )
    print_table(
        ["setting", "MACs", "FORA + linear", "runs (full)", "runs (two seeds)", "runs (cheap)"]
        + ["selected", "selected plan", "selected (blocks)", "blocks plan"],
        rows,
    )
    time_headers = [f"{family} at {speedup:g}x time" for speedup in TIME_SPEEDUPS for family in TIMED_FAMILIES]
    print_table(["setting", *time_headers], equal_time_rows(results))
    cost_rows = [
        [name, f"{r['generation_seconds']:.2f}"]
        + [f"{r['probing'][k]['plan_cost_in_generations']:.1f}" for k in ("full", "two seeds", "cheap")]
        + [f"{r['blocks']['plan_cost_in_generations']:.1f}" if "blocks" in r else "not run"]
        for name, r in results.items()
    ]
    print_table(["setting", "one generation (s)", "plan cost, full (generations)", "two seeds", "cheap", "blocks, full"], cost_rows)
    path = write_results("planning", {"machine": machine(), "settings": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
