"""Several processes: calibration split over ranks and merged with a collective; inference with no collective."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import smoothcache
from smoothcache.reference.pipelines import dit_transformer, sample_dit

WORKER = Path(__file__).parent / "distributed" / "worker.py"


def test_two_ranks_calibrate_like_one_process_and_infer_without_collectives(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517", str(WORKER), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    merged = smoothcache.ErrorProfile.load(tmp_path / "merged.safetensors")
    torch.manual_seed(0)
    model = dit_transformer("tiny")
    single = smoothcache.calibrate(model, lambda: [sample_dit(model, 8, label=label, seed=label) for label in (1, 2, 3, 4)])
    assert torch.equal(merged.counts, single.counts)
    torch.testing.assert_close(merged.sums, single.sums, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(merged.sums_sq, single.sums_sq, rtol=1e-9, atol=1e-12)
    assert merged.metadata["generations"] == single.metadata["generations"] == 4

    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["reused"] == ranks[1]["reused"] > 0  # the same decisions on different inputs
    assert ranks[0]["computed"] == ranks[1]["computed"]
    assert ranks[0]["distributed_calls"] == ranks[1]["distributed_calls"] == []


CONTEXT_PARALLEL_WORKER = Path(__file__).parent / "distributed" / "cp_worker.py"


def test_calibration_under_context_parallelism_equals_one_process(tmp_path):
    """diffusers' Ulysses and ring context parallelism on two gloo ranks (with the test-only shims of
    cp_shims.py): each rank measures a shard of every sample's tokens, and the errors' numerators and
    denominators are summed over the group, so every rank gets one process's profile and schedule."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    out = tmp_path / "cp.json"
    arguments = ["--families", "flux,wan", "--modes", "ulysses,ring", "--units", "component", "--schedules", "compute"]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29518", str(CONTEXT_PARALLEL_WORKER)]
        + ["--out", str(out), *arguments, "--orders", "parallel-first", "--calibrate", "--steps", "6"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    calibrations = [row for row in rows if row.get("calibrate")]
    assert {(row["family"], row["mode"]) for row in calibrations} == {(f, m) for f in ("flux", "wan") for m in ("ulysses", "ring")}
    for row in calibrations:
        assert row["ranks_agree"], row
        for rank in row["ranks"]:
            assert rank["mean_rel_diff_vs_single"] < 1e-5 and rank["schedule_equals_single"], row
    for row in rows:
        if not row.get("calibrate"):
            assert row.get("error") is None and row["max_abs_vs_baseline"] == 0.0 and row["unwrap"] == "ok", row
