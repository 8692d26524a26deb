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
