"""benchmarks/gpu.py, the one-call GPU check, end to end on tiny configurations on the CPU: the device run
is one shot, so every case must be in its JSON (run, or skipped with the reason), with sound numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import gpu

ROOT = Path(__file__).parent.parent

#: Every case and its parts, as the device run must report them.
PARTS = {
    "dit_xl2_batch8": {"eager", "compiled"},
    "dit_xl2_batch1": {"eager"},
    "stable_audio_open": {"eager", "compiled"},
    "opensora_v12": {"eager", "compiled"},
    "flux1_dev": {"eager", "compiled"},
    "correctness": {"pytest", "cuda_graphs"},
    "profile": {"trace"},
}
#: What a tiny CPU run skips, and what the reason must say.
SKIPPED_ON_CPU = {
    ("correctness", "pytest"): "needs CUDA",
    ("correctness", "cuda_graphs"): "needs CUDA",
    ("stable_audio_open", "compiled"): "tiny CPU run",
    ("opensora_v12", "compiled"): "tiny CPU run",
    ("flux1_dev", "compiled"): "tiny CPU run",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    returned = gpu.main(["--tiny", "--device", "cpu", "--out", str(out), "--profile"])
    return returned, json.loads(out.read_text()), out


def parts(results: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for case, found in results["cases"].items():
        for name, part in found.items():
            yield case, name, part


def timed(results: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Every variant that was timed: (case, part, variant, row)."""
    for case, name, part in parts(results):
        for variant, row in part.get("variants", {}).items():
            if "median_s" in row:
                yield case, name, variant, row


def test_every_case_is_in_the_json_and_ran_or_says_why_not(tiny):
    returned, written, _ = tiny
    assert json.loads(json.dumps(returned)) == written
    assert {case: set(found) for case, found in written["cases"].items()} == PARTS
    for case, name, part in parts(written):
        reason = SKIPPED_ON_CPU.get((case, name))
        if reason is None:
            assert part["status"] == "ran", (case, name, part)
        else:
            assert part["status"] == "skipped" and reason in part["reason"], (case, name, part)
    assert written["tiny"] is True and written["device"] == "cpu" and written["dtype"] == "float32"
    assert written["device_name"] and written["versions"]["torch"] and written["versions"]["diffusers"]
    assert written["elapsed_s"] < written["budget_s"]


def test_timings_are_finite_and_positive(tiny):
    _, written, _ = tiny
    rows = list(timed(written))
    assert len(rows) >= 20
    for case, name, variant, row in rows:
        for key in ("median_s", "speedup", "time_ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (case, name, variant, key, row[key])
        assert row["peak_memory_bytes"] is None  # CPU: no device memory to report
        if variant == gpu.BASELINE:
            assert row["time_ratio"] == 1.0
    assert written["cases"]["dit_xl2_batch8"]["eager"]["rounds"] >= 2


def test_skipping_schedules_have_a_mac_ideal_above_one_counted_two_ways(tiny):
    _, written, _ = tiny
    skipping = 0
    for case, name, variant, row in timed(written):
        if variant in (gpu.BASELINE, gpu.ALL_COMPUTE):
            assert row["mac_fraction"] == 1.0 and row["ideal_speedup"] == 1.0
        elif variant.startswith("smoothcache"):
            skipping += 1
            assert 0 < row["mac_fraction"] < 1 and row["ideal_speedup"] > 1, (case, name, variant)
            assert row["share_of_ideal"] == pytest.approx(row["speedup"] / row["ideal_speedup"])
            if name == "eager":  # the flop counter over a generation agrees with the engine's skipped MACs
                assert row["mac_fraction_from_stats"] == pytest.approx(row["mac_fraction"], rel=1e-6)
    assert skipping == 3 + 3 + 2 + 3  # DiT batch 8 eager and compiled, batch 1 (and sync_free), three calibrated models
    dit = written["cases"]["dit_xl2_batch8"]["eager"]["variants"]
    assert dit[gpu.LINEAR]["mac_fraction"] == pytest.approx(dit[gpu.ALPHA]["mac_fraction"])
    assert dit[gpu.ALPHA]["mac_fraction"] < dit[gpu.FORA]["mac_fraction"]  # the paper: 0.48 < 0.52 at 50 steps


def test_computed_and_reused_counts_match_the_schedules(tiny):
    _, written, _ = tiny
    counted = 0
    for case, name, variant, row in timed(written):
        if "counts" not in row:
            assert not variant.startswith("smoothcache") and variant != gpu.ALL_COMPUTE
            continue
        counted += 1
        counts = row["counts"]
        assert counts["generations"] == 1 and counts["refreshed"] == 0, (case, name, variant)
        assert counts["computed"] + counts["reused"] == counts["evaluations"] * counts["components"]
        assert counts["reused"] == counts["planned_reused"]
        assert (counts["reused"] > 0) == variant.startswith("smoothcache")
        assert row["cache_bytes_peak"] > 0 if counts["reused"] else row["cache_bytes_peak"] == 0
    assert counted == 2 * 4 + 4 + 3 * 2  # DiT batch 8 eager and compiled, batch 1 (and sync_free), three calibrated models


def test_peers_are_tuned_toward_the_alpha_schedule_macs_and_timed(tiny):
    _, written, _ = tiny
    eager = written["cases"]["dit_xl2_batch8"]["eager"]
    target = eager["variants"][gpu.ALPHA]["mac_fraction"]
    assert set(eager["peers"]) == {"diffusers FirstBlockCache", "diffusers TaylorSeer", "cache-dit DBCache"}
    for name, peer in eager["peers"].items():
        assert peer["target"] == pytest.approx(target)
        assert peer["tried"] and peer["mac_fraction"] == min((f for _, f in peer["tried"]), key=lambda f: abs(f - target))
        row = eager["variants"][name]
        assert row["mac_fraction"] == pytest.approx(peer["mac_fraction"]) and row["mac_fraction"] < 1


def test_compiled_variants_record_compilation(tiny):
    _, written, _ = tiny
    compiled = written["cases"]["dit_xl2_batch8"]["compiled"]
    eager = written["cases"]["dit_xl2_batch8"]["eager"]
    assert compiled["backend"] == "eager" and set(compiled["variants"]) == set(eager["variants"]) - set(eager["peers"])
    for row in compiled["variants"].values():
        assert row["compile_s"] > 0 and row["graphs"] >= 0 and row["graph_breaks"] == 0
    assert compiled["variants"][gpu.ALPHA]["graphs"] > 0  # one per block and decision pattern


def test_goals_are_listed_but_not_evaluated_on_a_tiny_run(tiny):
    _, written, _ = tiny
    goals = written["goals"]
    assert goals["evaluated"] is False
    assert len(goals["items"]) == 4 + 3
    for name, item in goals["items"].items():
        assert item["pass"] is None and item["value"] is not None and item["goal"], name


def test_profile_writes_a_trace_beside_the_json(tiny):
    _, written, out = tiny
    profile = written["cases"]["profile"]["trace"]
    trace = out.with_name(profile["trace"])
    assert trace.name == "gpu.trace.json" and json.loads(trace.read_text())["traceEvents"]
    assert profile["top_ops"] and all(op["calls"] > 0 for op in profile["top_ops"])


def test_a_short_budget_interrupts_the_running_part_and_skips_the_rest(tmp_path):
    """In its own process: the timer interrupts whatever runs, possibly inside a torch dispatch mode
    (the flop counter), which then stays on the mode stack; the script stops there, a test process
    would go on with it."""
    out = tmp_path / "gpu.json"
    arguments = ["--tiny", "--device", "cpu", "--out", str(out), "--budget-s", "0.5", "--cases", "dit_xl2_batch8", "dit_xl2_batch1"]
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads(out.read_text())
    assert {case: set(found) for case, found in written["cases"].items()} == PARTS
    first = written["cases"]["dit_xl2_batch8"]["eager"]
    assert first["status"] == "interrupted" and "budget" in first["reason"] and first["seconds"] < 10
    for case, name, part in parts(written):
        if (case, name) != ("dit_xl2_batch8", "eager"):
            assert part["status"] == "skipped", (case, name)
            expected = "ran out during dit_xl2_batch8 / eager" if case.startswith("dit") else "not selected"
            assert expected in part["reason"], (case, name, part["reason"])
