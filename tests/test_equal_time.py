"""The equal-time comparison: families compared at a wall-time speedup, from timed points."""

from __future__ import annotations

import math

from benchmarks.equal_time import markdown
from benchmarks.frontier import SELECTED_FAMILY, at_speedup


def _point(family: str, setting: str, mac_fraction: float, time_ratio: float, psnr: float) -> dict:
    return {"family": family, "setting": setting, "mac_fraction": mac_fraction, "time_ratio": time_ratio, "psnr_db": psnr}


def test_families_compare_at_equal_time_not_at_equal_macs():
    # the same MACs, but the second family's points run slower: at 2x wall time it is interpolated
    # between its two points, and it never reaches 2.5x
    fast = [_point("FORA", "n=2", 0.5, 0.5, 40.0), _point("FORA", "n=3", 0.33, 0.4, 35.0)]
    slow = [_point(SELECTED_FAMILY, "macs<=0.5", 0.5, 0.6, 45.0), _point(SELECTED_FAMILY, "macs<=0.34", 0.34, 0.45, 38.0)]
    assert at_speedup(slow, 2.0, "psnr_db") == 45.0  # at equal MACs
    expected = 45.0 + (math.log(2.0) - math.log(1 / 0.6)) / (math.log(1 / 0.45) - math.log(1 / 0.6)) * (38.0 - 45.0)
    assert math.isclose(at_speedup(slow, 2.0, "psnr_db", cost="time_ratio"), expected)
    assert at_speedup(slow, 2.5, "psnr_db", cost="time_ratio") is None
    text = markdown({"case": {"description": "d", "modality": "image", "rounds": 3, "points": fast + slow}}, "cmd")
    rows: dict[str, str] = {}
    for line in text.splitlines():  # the summary table comes first; the table of every point after it
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0], line)
    assert rows[f"| {SELECTED_FAMILY}"] == f"| {SELECTED_FAMILY} | not timed | {expected:.1f} | < 2.5x |"
    assert rows["| FORA"] == "| FORA | not timed | 40.0 | 35.0 |"
    assert "| FORA | n=3 | 3.03x | 2.50x | 35.0 |" in text
