"""Calibrate the trained reference models and write the shipped schedules and profiles (``schedules/``).

For every entry: calibrate the workload of ``smoothcache.reference.workloads`` on seeds
0..samples-1 (one sample of every class per seed: the frontier evaluates on seeds 1000+), probe the
final-output error of runs of skipped steps on seed 0 (``smoothcache.probe``, linear fill), save the error profile, derive
the schedule for the entry's MAC target and record in its provenance how it was made. Run from the
repository root (about 30 minutes on 2 CPU cores, most of it probing):

    python scripts/make_schedules.py [--only digits-dit-ddim-50 ...]
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import smoothcache
from smoothcache.reference import weights_digest, workloads

SCHEDULES = Path(__file__).resolve().parent.parent / "schedules"


@dataclass(frozen=True)
class Entry:
    """One shipped schedule: the workload, its sampler and steps, and how its table is derived."""

    name: str
    workload: str  # a factory of smoothcache.reference.workloads
    scheduler: str | None
    steps: int
    samples: int
    macs: float
    probes: int  # probed steps (evenly spaced); every run length is probed from each
    run_lengths: int = 2
    fill: str = "linear"  # skipped steps extend the line through the last two computed values
    granularity: str = "type"
    method: str = "runs"


#: The shipped schedules. Each keeps half the MACs of its components' work (the frontier's 2x point),
#: planned on probed runs whose skipped steps extrapolate linearly: on the frontier the most faithful
#: method at 2x on every reference model (see docs/frontier.md).
ENTRIES = (
    Entry("digits-dit-ddim-50", "digits", "ddim", 50, samples=4, macs=0.5, probes=24),
    Entry("digits-dit-dpm-25", "digits", "dpm", 25, samples=4, macs=0.5, probes=12),
    Entry("tones-dit-cosine-dpm-50", "tones", None, 50, samples=6, macs=0.5, probes=24),
    Entry("moving-digits-stdit3-rflow-30", "moving_digits", None, 30, samples=2, macs=0.5, probes=14),
)


def make(entry: Entry, recalibrate: bool = True) -> smoothcache.Schedule:
    """Calibrate (or load the shipped profile) and write the schedule with its provenance."""
    workload = getattr(workloads, entry.workload)()
    if entry.scheduler is not None:
        workload.set_solver(entry.scheduler)
    profile_path = SCHEDULES / f"{entry.name}.profile.safetensors"
    if recalibrate:

        def run() -> None:
            for seed in range(entry.samples):
                workload.generate(seed, entry.steps)

        profile = smoothcache.calibrate(workload.model, run, solver=entry.scheduler or workload.solver)
        profile = smoothcache.probe(
            workload.model,
            profile,
            lambda: workload.generate(0, entry.steps),
            probes=entry.probes,
            run_lengths=entry.run_lengths,
            fill=entry.fill,
        )
        profile.save(profile_path)
    else:
        profile = smoothcache.ErrorProfile.load(profile_path)
    schedule = profile.schedule(macs=entry.macs, granularity=entry.granularity, method=entry.method)
    provenance = {
        **schedule.provenance,
        "calibration": {
            "workload": f"smoothcache.reference.workloads:{entry.workload}",
            "description": workload.description,
            "scheduler": entry.scheduler or workload.solver,
            "steps": entry.steps,
            "seeds": list(range(entry.samples)),
            "probes": {"seed": 0, "steps": entry.probes, "run_lengths": entry.run_lengths, "fill": entry.fill},
            "weights_sha256": weights_digest(workload.model),
            "command": f"python scripts/make_schedules.py --only {entry.name}",
        },
    }
    schedule = smoothcache.Schedule(schedule.tables, provenance, schedule.fill)
    schedule.save(SCHEDULES / f"{entry.name}.json")
    return schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[e.name for e in ENTRIES], help="make these entries only")
    parser.add_argument(
        "--from-profiles",
        action="store_true",
        help="derive the schedules from the shipped profiles (same weights) instead of recalibrating",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for entry in ENTRIES:
        if args.only and entry.name not in args.only:
            continue
        schedule = make(entry, recalibrate=not args.from_profiles)
        print(
            f"{entry.name}: {len(schedule.tables)} lists x {schedule.steps} steps, MAC fraction {schedule.provenance['mac_fraction']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
