"""One calibration for every step count and sampler: plans for grids no calibration saw, against every other cache.

The trained digits DiT is calibrated once, DDIM 50 steps on seeds 0..3 (ten labels each), with the
step sensitivity measured in one more pass (``smoothcache.calibrate(..., sensitivity=True)``: two
generation-times of the calibration batch in all). Then, on held-out grids (other step counts,
samplers, a Karras grid, a second-order solver, other guidance scales), every method generates the
evaluation set (30 samples, seed 1000, never seen by any calibration) and is scored by PSNR to the
uncached output of the same grid and seed, its MACs counted by torch's flop counter:

- ``smoothcache (one calibration)``: ``wrap(model, profile=profile, macs=m)`` planning for the grid
  (``handle.plan_for(timesteps)``; a pipeline tells it the grid itself), at each FORA interval's MACs
  and at 0.3 and 0.25;
- ``smoothcache resampled``: the 0.2 path, the DDIM-50 schedule at the same MACs (greedy per type,
  the paper's method) mapped by ``Schedule.resample`` (it does not land on the budget);
- ``smoothcache native``: calibrated on the grid itself (same seeds, with sensitivity) and planned
  for it: what a calibration per grid would add;
- ``FORA + linear fill``: intervals 2, 3, 4;
- the peers of :mod:`benchmarks.peers` over their knob (MagCache calibrated on the grid itself, as
  it must be).

Each method's PSNR at 2x and 3x fewer MACs is interpolated in log speedup between its points.

Run: ``python -m benchmarks.step_counts [--grids ddim-20 ...]``. Writes
benchmarks/results/step_counts.json (grids run now replace their earlier results) and docs/step-counts.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import smoothcache
from benchmarks.common import RESULTS, timed, write_results
from benchmarks.frontier import at_speedup
from smoothcache.reference import digits
from smoothcache_core.macs import flop_counter
from smoothcache_core.metrics import psnr

DOCS = Path(__file__).resolve().parents[1] / "docs"
CALIBRATION = ("ddim", 50)
CALIBRATION_SEEDS = (0, 1, 2, 3)
LABELS = list(range(digits.NUM_CLASSES))
EVALUATION_LABELS = [label for label in LABELS for _ in range(3)]
EVALUATION_SEED = 1000
FORA_INTERVALS = (2, 3, 4)
#: Budgets past FORA-4's on short grids, so that every planner's points reach 3x.
LOW_BUDGETS = (0.3, 0.25)
SPEEDUPS = (2.0, 3.0)
ONE_CALIBRATION = "smoothcache (one calibration)"


@dataclass(frozen=True)
class Grid:
    """One held-out sampler setting."""

    name: str
    scheduler: str
    steps: int
    guidance: float = digits.DEFAULT_GUIDANCE

    def generate(self, model: torch.nn.Module, labels: list[int], seed: int) -> torch.Tensor:
        return digits.sample_digits(model, labels, self.steps, self.scheduler, seed, self.guidance)

    def timesteps(self) -> list[float]:
        return [float(t) for t in digits.make_scheduler(self.scheduler, self.steps).timesteps]


GRIDS = (  # the held-out grids the claim is judged on first; the calibrated grid (unseen seeds) last
    Grid("ddim-20", "ddim", 20),
    Grid("dpm-20", "dpm", 20),
    Grid("unipc-15", "unipc", 15),
    Grid("ddim-30", "ddim", 30),
    Grid("euler-28", "euler", 28),
    Grid("euler-karras-28", "euler-karras", 28),
    Grid("dpm-20-g2", "dpm", 20, 2.0),
    Grid("ddim-30-g5", "ddim", 30, 5.0),
    Grid("heun-10", "heun", 10),
    Grid("dpm-25", "dpm", 25),
    Grid("ddim-100", "ddim", 100),
    Grid("ddim-50", "ddim", 50),
)


def _macs(generate: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    counter = flop_counter()
    with counter:
        output = generate()
    return output, counter.get_total_flops() // 2


def calibrate(model: torch.nn.Module, grid: Grid) -> smoothcache.ErrorProfile:
    """A profile of ``grid`` with its sensitivity, on the calibration seeds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smoothcache.calibrate(
            model,
            lambda: [grid.generate(model, LABELS, seed) for seed in CALIBRATION_SEEDS],
            scheduler=digits.make_scheduler(grid.scheduler, grid.steps),
            sensitivity=True,
        )


@contextlib.contextmanager
def _planned(model: torch.nn.Module, profile: smoothcache.ErrorProfile, macs: float, timesteps: list[float]) -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # grids past the calibrated noise levels are warned of; this measures them
        with smoothcache.wrap(model, profile=profile, macs=macs) as handle:
            handle.plan_for(timesteps)
            yield


@contextlib.contextmanager
def _scheduled(model: torch.nn.Module, schedule: smoothcache.Schedule) -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with smoothcache.wrap(model, schedule=schedule):
            yield


def _methods(
    model: torch.nn.Module, grid: Grid, profile: smoothcache.ErrorProfile, native: smoothcache.ErrorProfile
) -> list[tuple[str, str, Any]]:
    """(family, setting, context factory) of every method on ``grid``."""
    from benchmarks import peers

    timesteps = grid.timesteps()
    evaluations = len(timesteps)
    keys = profile.curves("type")[0]
    cached = sum(profile.macs) / profile.evaluation_macs
    methods: list[tuple[str, str, Any]] = []
    fractions = []
    for interval in FORA_INTERVALS:
        fora = smoothcache.Schedule.fora(evaluations, interval, keys, fill="linear")
        fractions.append(1 - cached * (evaluations - sum(fora.tables[keys[0]])) / evaluations)
        methods.append(("FORA + linear fill", f"interval={interval}", lambda s=fora: _scheduled(model, s)))
    for fraction in [*fractions, *LOW_BUDGETS]:
        methods.append((ONE_CALIBRATION, f"macs={fraction:.3f}", lambda m=fraction: _planned(model, profile, m, timesteps)))
        methods.append(("smoothcache native", f"macs={fraction:.3f}", lambda m=fraction: _planned(model, native, m, timesteps)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resampled = profile.schedule(macs=fraction).resample(evaluations)
        methods.append(("smoothcache resampled", f"macs={fraction:.3f}", lambda s=resampled: _scheduled(model, s)))
    for peer in peers.PEERS:
        if isinstance(peer, peers.OriginalSmoothCache) or peer.unsupported(model):
            continue
        for value in peer.values:
            methods.append(
                (
                    peer.name,
                    f"{peer.knob}={value}",
                    lambda p=peer, v=value: p.apply(model, v, evaluations, calibrate=lambda: grid.generate(model, LABELS, 0)),
                )
            )
    return methods


def run_grid(model: torch.nn.Module, grid: Grid, profile: smoothcache.ErrorProfile) -> dict[str, Any]:
    """Every method's points on ``grid``."""
    native, native_s = (
        (profile, 0.0)
        if (grid.scheduler, grid.steps, grid.guidance) == (*CALIBRATION, digits.DEFAULT_GUIDANCE)
        else timed(lambda: calibrate(model, grid))
    )
    reference, full_macs = _macs(lambda: grid.generate(model, EVALUATION_LABELS, EVALUATION_SEED))
    points = []
    for family, setting, context in tqdm(_methods(model, grid, profile, native), desc=grid.name, leave=False):
        with context():
            output, macs = _macs(lambda: grid.generate(model, EVALUATION_LABELS, EVALUATION_SEED))
        points.append({"family": family, "setting": setting, "mac_fraction": macs / full_macs, "psnr_db": psnr(reference, output)})
    return {"grid": grid.__dict__, "evaluations": len(grid.timesteps()), "native_calibration_seconds": native_s, "points": points}


def at(result: dict[str, Any], family: str, speedup: float) -> float | None:
    points = [p for p in result["points"] if p["family"] == family]
    return at_speedup(points, speedup, "psnr_db")


def _families(results: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for result in results.values():
        for point in result["points"]:
            seen.setdefault(point["family"], None)
    order = [ONE_CALIBRATION, "smoothcache native", "smoothcache resampled", "FORA + linear fill"]
    return [f for f in order if f in seen] + [f for f in seen if f not in order]


def summary(results: dict[str, Any], speedup: float) -> dict[str, Any]:
    """Over the held-out grids: where the one-calibration plans lead every other cache, and by how much."""
    leads, margins, behind_native = 0, [], []
    held_out = [name for name in results if name != "ddim-50"]
    for name in held_out:
        ours = at(results[name], ONE_CALIBRATION, speedup)
        others = [at(results[name], f, speedup) for f in _families(results) if not f.startswith("smoothcache")]
        best = max((v for v in others if v is not None), default=None)
        native = at(results[name], "smoothcache native", speedup)
        if ours is not None and best is not None:
            leads += ours > best
            margins.append(ours - best)
        if ours is not None and native is not None:
            behind_native.append(native - ours)
    return {
        "speedup": speedup,
        "grids": len(held_out),
        "leads_every_other_cache": leads,
        "mean_margin_db": sum(margins) / len(margins) if margins else None,
        "min_margin_db": min(margins) if margins else None,
        "mean_native_minus_one_calibration_db": sum(behind_native) / len(behind_native) if behind_native else None,
    }


def markdown(data: dict[str, Any], command: str) -> str:
    results = data["grids"]
    families = _families(results)
    lines = [
        "# One calibration for every step count and sampler",
        "",
        "<!-- written by benchmarks/step_counts.py; do not edit by hand -->",
        "",
        f"The digits DiT calibrated once ({data['calibration']['description']}; "
        f"{data['calibration']['generation_equivalents']:.1f} generation-times of the calibration batch, sensitivity included), "
        "then planned for each grid below in milliseconds. PSNR (dB) to the uncached output of the same grid and seed "
        f"(30 samples, seed {EVALUATION_SEED}, never calibrated on), at equal MACs (torch's flop counter), interpolated "
        "between each method's points; `< Nx`: the method does not reach that speedup. `ddim-50` is the calibrated grid.",
        "",
        f"Command: `{command}` ({data['date']}, {data['machine']}).",
        "",
    ]
    for speedup in SPEEDUPS:
        lines += [f"## At {speedup:g}x fewer MACs", "", "| method | " + " | ".join(results) + " |", "|" + "---|" * (len(results) + 1)]
        for family in families:
            cells = []
            for result in results.values():
                value = at(result, family, speedup)
                cells.append(
                    "n/a"
                    if not any(p["family"] == family for p in result["points"])
                    else f"< {speedup:g}x"
                    if value is None
                    else f"{value:.1f}"
                )
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
        s = data["summary"][f"{speedup:g}x"]
        margin = "n/a" if s["mean_margin_db"] is None else f"{s['mean_margin_db']:+.1f} dB (least {s['min_margin_db']:+.1f})"
        native = s["mean_native_minus_one_calibration_db"]
        lines += [
            "",
            f"Held-out grids where one calibration leads every other cache: {s['leads_every_other_cache']} of {s['grids']}; "
            f"margin over the best other cache: {margin}; a calibration per grid would add "
            f"{'n/a' if native is None else f'{native:+.1f} dB'} on average.",
            "",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grids", nargs="+", default=[g.name for g in GRIDS], choices=[g.name for g in GRIDS])
    parser.add_argument("--report-only", action="store_true", help="rewrite docs/step-counts.md from step_counts.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    path = RESULTS / "step_counts.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    results: dict[str, Any] = stored.get("grids", {})
    calibration = stored.get("calibration", {})
    if not args.report_only:
        model = digits.load_digits_dit()
        base = Grid("calibration", *CALIBRATION)
        generation_s = sorted(timed(lambda: base.generate(model, LABELS, 0))[1] for _ in range(3))[1]
        profile, seconds = timed(lambda: calibrate(model, base))
        calibration = {
            "description": f"DDIM {CALIBRATION[1]} steps, seeds {CALIBRATION_SEEDS[0]}..{CALIBRATION_SEEDS[-1]}, {len(LABELS)} labels each",
            "seconds": seconds,
            "generation_equivalents": seconds / (generation_s * len(CALIBRATION_SEEDS)),
        }
        for grid in GRIDS:
            if grid.name in args.grids:
                results[grid.name] = run_grid(model, grid, profile)
                ordered = {g.name: results[g.name] for g in GRIDS if g.name in results}
                write_results("step_counts", {"calibration": calibration, "grids": ordered})
    results = {g.name: results[g.name] for g in GRIDS if g.name in results}
    data = {"calibration": calibration, "grids": results, "summary": {f"{s:g}x": summary(results, s) for s in SPEEDUPS}}
    if not args.report_only:
        write_results("step_counts", data)
    machine_info = json.loads(path.read_text()).get("machine", {})
    data["date"] = machine_info.get("date", "")
    data["machine"] = f"{machine_info.get('processor', '?')}, {machine_info.get('threads', '?')} threads"
    (DOCS / "step-counts.md").write_text(markdown(data, "python -m benchmarks.step_counts"))
    for key, value in data["summary"].items():
        print(key, value)
    print(f"wrote {path} and docs/step-counts.md")


if __name__ == "__main__":
    main()
