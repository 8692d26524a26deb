"""Does weighting each step's error by the probed sensitivity of the final sample make better schedules?

On the trained digits DiT with DDIM 50 and DPM-Solver++ 25: the shipped profile (calibrated on seeds
0..3) is probed at every interior step with one generation of the ten digits of seed 0, then
schedules at equal MAC targets are derived with the paper's measure ("uniform") and with the step
weights ("sensitivity"), greedy and optimal, lookahead 3 and 2, plus FORA. Each is scored by the
PSNR of 100 digits (seed 1000, as the frontier) against the uncached digits of the same seed.
It also checks whether reuse costs add up: on the probe's digits, the final error of a run of 2 or
3 reuses, and of FORA n=2's separate single reuses, over the sum of the probed single-step errors.

Run: ``python -m benchmarks.sensitivity`` (about 8 minutes on 2 CPU cores). Writes
benchmarks/results/sensitivity.json and sensitivity.md (the tables and the measured step weights);
``--report-only`` rewrites the markdown from the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

import smoothcache
from benchmarks.common import RESULTS, machine, write_results
from smoothcache import schedules
from smoothcache.reference import digits
from smoothcache_core.metrics import psnr
from smoothcache_core.sensitivity import relative_l1

CASES = {"ddim": 50, "dpm": 25}
TARGETS = (0.5, 0.4)
VARIANTS = [
    (method, weighting, lookahead) for weighting in ("uniform", "sensitivity") for lookahead in (3, 2) for method in ("greedy", "optimal")
]
EVALUATION_SEED, PROBE_SEED = 1000, 0


def run_case(scheduler: str, steps: int) -> dict[str, Any]:
    model = digits.load_digits_dit()
    labels = [label for label in range(10) for _ in range(10)]

    def sample(seed: int = EVALUATION_SEED, label_set: list[int] = labels) -> torch.Tensor:
        return digits.sample_digits(model, label_set, steps, scheduler=scheduler, seed=seed)

    profile = schedules.profile(f"digits-dit-{scheduler}-{steps}")
    start = time.perf_counter()
    probed = smoothcache.probe(model, profile, lambda: sample(PROBE_SEED, list(range(10))))
    probe_seconds = time.perf_counter() - start
    probe_reference = sample(PROBE_SEED, list(range(10)))
    singles = (probed.probe_sums / probed.probe_counts.clamp_min(1)).numpy()
    keys = set(profile.curves()[0])

    def additivity(table: list[int]) -> float:
        """Final relative L1 error of ``table`` (all components) over the sum of its steps' single-reuse errors."""
        with smoothcache.wrap(model, schedule=smoothcache.Schedule(dict.fromkeys(keys, table), {"steps": steps})):
            output = sample(PROBE_SEED, list(range(10)))
        measured = relative_l1(output.double(), probe_reference.double())
        return measured / float(sum(singles[i] for i, compute in enumerate(table) if not compute))

    runs = []
    for start in (steps // 10, 2 * steps // 5, 7 * steps // 10, steps - 6):
        for length in (2, 3):
            table = [1] * steps
            table[start : start + length] = [0] * length
            runs.append({"start": start, "length": length, "ratio_to_singles": additivity(table)})
    fora_ratio = additivity(smoothcache.Schedule.fora(steps, 2, ["all"]).tables["all"])
    reference = sample()
    rows = []

    def score(schedule: smoothcache.Schedule, **setting: Any) -> None:
        with smoothcache.wrap(model, schedule=schedule):
            output = sample()
        rows.append({**setting, "mac_fraction": profile.mac_report(schedule).fraction, "psnr_db": psnr(reference, output)})

    for target in TARGETS:
        for method, weighting, lookahead in VARIANTS:
            schedule = probed.schedule(macs=target, method=method, weighting=weighting, lookahead=lookahead)
            score(schedule, target=target, method=method, weighting=weighting, lookahead=lookahead)
    for interval in (2, 3):
        score(smoothcache.Schedule.fora(steps, interval, keys), target=None, method=f"FORA n={interval}", weighting="-", lookahead=1)
    return {
        "steps": steps,
        "probe_seconds": probe_seconds,
        "step_weights": probed.step_weights().round(3).tolist(),
        "points": rows,
        "runs_over_singles": runs,
        "fora2_over_singles": fora_ratio,
    }


def markdown(cases: dict[str, Any]) -> str:
    """One table per sampler: every variant's MAC fraction and PSNR, then the step weights."""
    lines = ["# Step sensitivity: weighting the calibration error by the probed step weights", ""]
    lines += [
        "Produced by `python -m benchmarks.sensitivity`. Shipped profile, probed at every interior step on the ten digits of "
        "seed 0; PSNR of 100 digits (seed 1000) against the uncached digits of the same seed.",
        "",
    ]
    for name, result in cases.items():
        lines += [f"## digits DiT, {name.upper()} {result['steps']} steps", ""]
        lines += ["| MAC target | method | weighting | lookahead | MAC fraction | PSNR dB |", "|---|---|---|---|---|---|"]
        for point in result["points"]:
            lines.append(
                f"| {point['target'] or '-'} | {point['method']} | {point['weighting']} | {point['lookahead']} "
                f"| {point['mac_fraction']:.3f} | {point['psnr_db']:.2f} |"
            )
        lines += ["", f"Step weights (mean 1; probing took {result['probe_seconds']:.0f} s): {result['step_weights']}", ""]
        runs = ", ".join(f"{run['length']} from step {run['start']}: {run['ratio_to_singles']:.2f}" for run in result["runs_over_singles"])
        lines += [
            f"Do reuse costs add up? Final error over the sum of the single-step errors: runs {runs}; "
            f"FORA n=2 (separate single reuses): {result['fora2_over_singles']:.2f}.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="rewrite sensitivity.md from sensitivity.json")
    if parser.parse_args().report_only:
        cases = json.loads((RESULTS / "sensitivity.json").read_text())["cases"]
    else:
        cases = {name: run_case(name, steps) for name, steps in CASES.items()}
        write_results("sensitivity", {"machine": machine(), "command": "python -m benchmarks.sensitivity", "cases": cases})
    report = markdown(cases)
    (RESULTS / "sensitivity.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
