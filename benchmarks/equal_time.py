"""Fidelity at equal wall time: the frontier's methods timed properly, then compared at equal seconds.

The frontier (``benchmarks/frontier.py``) compares methods at equal MACs and records one wall time per
point, too noisy on a shared CPU to rank methods whose costs differ by a few per cent (and the
linear fill, the engine and the dynamic caches' decisions all cost time that MACs do not show).
Here every point of the frontier whose MAC speedup lies in ``MAC_SPEEDUPS`` is timed again on a few
samples of the same evaluation set (``Case.timed``): in each round every method runs once, in
groups of ``GROUP`` between two uncached runs, its time relative to the mean of the two; the time
ratio is the median over rounds (the order rotates every round). Fidelity is the frontier's, on the
whole evaluation set; the selected schedules are the ones the frontier's selection chose (stored with
its points), so nothing is selected again.

Run: ``python -m benchmarks.equal_time [--cases digits-ddim ...] [--rounds 3]`` after the frontier.
Writes benchmarks/results/equal_time.json (cases run now replace their earlier results) and
docs/equal-time.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import warnings
from collections.abc import Callable
from typing import Any

import torch
from tqdm import tqdm

import smoothcache
from benchmarks import frontier, peers
from benchmarks.common import RESULTS, timed, write_results

#: The MAC speedups of the frontier's points that are timed: around the 2x and 3x comparisons.
MAC_SPEEDUPS = (1.6, 4.0)
#: Wall-time speedups at which the families are compared.
TIME_SPEEDUPS = (1.5, 2.0, 2.5)
#: Methods timed between two uncached runs.
GROUP = 3


Timed = list[tuple[frontier.Method, dict[str, Any]]]


def _methods(case: frontier.Case, stored: dict[str, Any], families: list[str] | None = None) -> Timed:
    """The frontier's methods at the stored points inside ``MAC_SPEEDUPS`` (of ``families``, or all),
    with those points."""
    wanted = {
        (point["family"], point["setting"]): point
        for point in stored["points"]
        if point["family"] != "uncached" and MAC_SPEEDUPS[0] <= 1 / point["mac_fraction"] <= MAC_SPEEDUPS[1]
    }
    profile, _ = frontier._profile(case)
    built = frontier._smoothcache_methods(case, profile) + frontier._peer_methods(case, profile, {})
    selected = {(family, setting): point for (family, setting), point in wanted.items() if "schedule" in point}
    chosen = [(m, wanted[(m.family, m.setting)]) for m in built if (m.family, m.setting) in wanted.keys() - selected.keys()]
    for (family, setting), point in selected.items():
        schedule = frontier.stored_schedule(point)
        chosen.append((frontier.Method(family, setting, lambda s=schedule: smoothcache.wrap(case.model, schedule=s)), point))
    return [(method, point) for method, point in chosen if families is None or method.family in families]


@contextlib.contextmanager
def _magcache_calibrated_once() -> Any:
    """MagCache calibrates whenever it is enabled; its ratios depend only on model and steps here."""
    original, memo = peers.MagCache.ratios, {}

    def ratios(self: peers.MagCache, model: torch.nn.Module, steps: int, calibrate: Callable[[], Any]) -> list[float]:
        key = (id(model), steps)
        if key not in memo:
            memo[key] = original(self, model, steps, calibrate)
        return memo[key]

    peers.MagCache.ratios = ratios  # type: ignore[method-assign]
    try:
        yield
    finally:
        peers.MagCache.ratios = original  # type: ignore[method-assign]


def time_case(
    name: str, rounds: int, stored: dict[str, Any], families: list[str] | None = None, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Time ratios of the case's points (median over ``rounds``), with the frontier's fidelity; with
    ``families``, only theirs, the other points kept from ``previous``."""
    case = frontier.CASES[name]()
    assert case.timed is not None
    sample = case.timed
    methods = _methods(case, stored, families)
    ratios: list[list[float]] = [[] for _ in methods]
    with torch.no_grad(), frontier._quiet(), _magcache_calibrated_once():
        sample()
        warmed = set()
        for method, _ in methods:  # warm-up per family: one-time costs (MAC measurement, calibration) are not timed
            if method.family not in warmed:
                warmed.add(method.family)
                with method.enable():
                    sample()
        for round_index in tqdm(range(rounds), desc=name, unit="round"):
            shift = round_index * GROUP % len(methods)
            order = list(range(len(methods)))[shift:] + list(range(len(methods)))[:shift]
            before = timed(sample)[1]
            for start in range(0, len(order), GROUP):
                group = []
                for index in order[start : start + GROUP]:
                    with methods[index][0].enable():
                        group.append((index, timed(sample)[1]))
                after = timed(sample)[1]
                for index, seconds in group:
                    ratios[index].append(seconds / ((before + after) / 2))
                before = after
    points = [point for point in (previous or {}).get("points", []) if families is not None and point["family"] not in families]
    for (_method, point), measured in zip(methods, ratios, strict=True):
        kept = {key: value for key, value in point.items() if key not in ("time_ratio", "schedule")}
        points.append({**kept, "time_ratio": statistics.median(measured), "time_ratios": measured})
    return {"case": name, "description": stored["description"], "modality": stored["modality"], "rounds": rounds, "points": points}


def _measure(result: dict[str, Any]) -> str:
    return "snr_db" if result["modality"] == "audio" else "psnr_db"


def equal_time_cell(points: list[dict[str, Any]], speedup: float, key: str) -> str:
    """A family's ``key`` at ``speedup`` in wall time, interpolated between its timed points; '< Nx'
    when its fastest point is slower, 'not timed' when its slowest is already faster."""
    value = frontier.at_speedup(points, speedup, key, cost="time_ratio")
    if value is not None:
        return f"{value:.1f}"
    fastest = max(1 / point["time_ratio"] for point in points)
    return f"< {speedup:g}x" if fastest < speedup else "not timed"


def markdown(results: dict[str, Any], command: str) -> str:
    """docs/equal-time.md: per case, every family at equal wall time, then every timed point."""
    lines = [
        "# Benchmarks: fidelity at equal wall time",
        "",
        f"Produced by `{command}` after `python -m benchmarks.frontier` (CPU, 2 cores); raw numbers in",
        "`benchmarks/results/equal_time.json`. Each point of the [frontier](frontier.md) between "
        f"{MAC_SPEEDUPS[0]:g}x and {MAC_SPEEDUPS[1]:g}x fewer",
        f"MACs is timed on a few samples of its evaluation set, in groups of {GROUP} between two uncached runs, the median of",
        "the rounds' ratios; fidelity is the frontier's (whole evaluation set, against uncached). Time",
        "speedup = 1 / time ratio. '< Nx': the family's fastest timed point is slower than that; 'not timed':",
        f"its slowest timed point is faster (points below {MAC_SPEEDUPS[0]:g}x fewer MACs are not timed).",
        "",
    ]
    for name, result in results.items():
        measure = _measure(result)
        families = frontier._families(result)
        lines += [f"## {name}: {result['description']}", "", f"{result['rounds']} rounds. {measure} at equal wall time:", ""]
        lines.append("| method | " + " | ".join(f"{speedup:g}x" for speedup in TIME_SPEEDUPS) + " |")
        lines.append("|" + "---|" * (len(TIME_SPEEDUPS) + 1))
        for family, points in families.items():
            cells = [equal_time_cell(points, speedup, measure) for speedup in TIME_SPEEDUPS]
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
        lines += ["", "Every timed point:", "", f"| method | setting | MAC speedup | time speedup | {measure} |", "|---|---|---|---|---|"]
        for family, points in families.items():
            for point in points:
                lines.append(
                    f"| {family} | {point['setting']} | {1 / point['mac_fraction']:.2f}x | {1 / point['time_ratio']:.2f}x | "
                    f"{point.get(measure, float('nan')):.1f} |"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(frontier.CASES), choices=list(frontier.CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--families", nargs="+", metavar="FAMILY", help="time only these families; keep the stored points of the others")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    stored = json.loads((RESULTS / "frontier.json").read_text())["cases"]
    path = RESULTS / "equal_time.json"
    results = json.loads(path.read_text())["cases"] if path.exists() else {}
    for name in args.cases:
        results[name] = time_case(name, args.rounds, stored[name], args.families, results.get(name))
        write_results("equal_time", {"cases": results})
    results = {name: results[name] for name in frontier.CASES if name in results}
    (frontier.DOCS / "equal-time.md").write_text(markdown(results, "python -m benchmarks.equal_time"))
    print(markdown(results, "python -m benchmarks.equal_time"))


if __name__ == "__main__":
    main()
