"""MAC fractions of the published SmoothCache schedules on a full-size DiT-XL/2, against the paper.

DiT-XL/2 (facebookresearch layout: 28 blocks, width 1152, 256x256 images -> 32x32 latent, patch 2)
is built on the meta device, so counting is free. Every file in tests/data/reference-schedules/
(except the diffusers calibration example) is applied; one JSON line per schedule, then a table
beside Table 1 of the paper (TMACs, DDIM, CFG batch).

Run: ``python -m benchmarks.paper_macs``. Writes benchmarks/results/paper_macs.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import smoothcache
from benchmarks.common import print_table, write_results
from smoothcache.builtin.dit import DiTAdapter
from smoothcache.reference.dit import DiT_XL_2
from smoothcache_core import count_macs

SCHEDULES = Path(__file__).parent.parent / "tests" / "data" / "reference-schedules"
#: Paper Table 1 (and the original repository's README): TMACs with the schedule and without cache.
PAPER_TMACS = {
    "50-N-3-threshold-0.08.json": (336.37, 365.59),
    "50-N-3-threshold-0.18.json": (175.65, 365.59),
    "50-N-2-fora.json": (190.25, 365.59),
    "50-N-2-l2c.json": (278.71, 365.59),
    "30-N-3-threshold-0.35.json": (117.08, 219.36),
    "30-N-2-fora.json": (117.08, 219.36),
    "70-N-3-threshold-0.08.json": (248.8, 511.83),
    "70-N-2-fora.json": (263.43, 511.83),
}


def paper_mac_fractions() -> list[dict]:
    """MAC fraction and ideal speedup of every published schedule on DiT-XL/2 (meta device)."""
    with torch.device("meta"):
        model = DiT_XL_2(input_size=32)
        x = torch.empty(2, 4, 32, 32)
        t = torch.empty(2, dtype=torch.long)
        y = torch.empty(2, dtype=torch.long)
    components = DiTAdapter().components(model)
    count = count_macs(components, lambda: model.forward_with_cfg(x, t, y, 4.0))
    rows = []
    for name, (paper, paper_total) in PAPER_TMACS.items():
        report = count.for_schedule(smoothcache.Schedule.load(SCHEDULES / name).compile(components), components)
        rows.append(
            {
                "schedule": name,
                "steps": report.steps,
                "mac_fraction": report.fraction,
                "ideal_speedup": report.ideal_speedup,
                "paper_fraction": paper / paper_total,
                "relative_difference": report.fraction / (paper / paper_total) - 1,
            }
        )
    return rows


def main() -> None:
    rows = paper_mac_fractions()
    for row in rows:
        print(json.dumps({key: row[key] for key in ("schedule", "steps", "mac_fraction", "ideal_speedup")}))
    print()
    print_table(
        ["schedule", "steps", "ours: fraction", "paper: TMACs / no-cache", "paper fraction", "difference"],
        [
            [
                r["schedule"],
                r["steps"],
                r["mac_fraction"],
                f"{PAPER_TMACS[r['schedule']][0]} / {PAPER_TMACS[r['schedule']][1]}",
                r["paper_fraction"],
                f"{100 * r['relative_difference']:+.2f} %",
            ]
            for r in rows
        ],
    )
    print(f"\nwrote {write_results('paper_macs', {'schedules': rows})}")


if __name__ == "__main__":
    main()
