"""MAC accounting reproduces the paper's compute figures for the published schedules."""

from __future__ import annotations

import pytest

from benchmarks.paper_macs import PAPER_TMACS, paper_mac_fractions


def test_published_schedules_match_the_paper_within_half_a_percent():
    rows = paper_mac_fractions()
    assert {row["schedule"] for row in rows} == set(PAPER_TMACS)
    for row in rows:
        assert row["mac_fraction"] == pytest.approx(row["paper_fraction"], rel=0.005), row["schedule"]
        assert row["ideal_speedup"] == pytest.approx(1 / row["mac_fraction"])
