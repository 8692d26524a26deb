"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

Each rank calibrates its own labels and the profiles are merged with one collective; then each rank
generates a different sample with the same schedule while every torch.distributed call is recorded.
Rank 0 writes the merged profile and a JSON of what every rank saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import smoothcache
from smoothcache.reference.pipelines import dit_transformer, sample_dit

STEPS = 8
LABELS = {0: [1, 2], 1: [3, 4]}
#: The collectives and point-to-point calls a dynamic cache would need to agree on a decision.
WATCHED = (
    "all_reduce",
    "all_gather",
    "all_gather_object",
    "broadcast",
    "broadcast_object_list",
    "barrier",
    "reduce",
    "send",
    "recv",
    "scatter",
    "gather",
)


def main(output: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = dit_transformer("tiny")
    profile = smoothcache.calibrate(model, lambda: [sample_dit(model, STEPS, label=label, seed=label) for label in LABELS[rank]])
    merged = profile.all_reduce()

    calls: list[str] = []
    originals = {name: getattr(dist, name) for name in WATCHED}
    for name, function in originals.items():
        setattr(dist, name, lambda *a, _n=name, _f=function, **k: (calls.append(_n), _f(*a, **k))[1])
    try:
        with smoothcache.wrap(model, schedule=merged.schedule(macs=0.6)) as handle:
            sample_dit(model, STEPS, label=rank, seed=100 + rank)  # different inputs on each rank
            stats = handle.stats()
    finally:
        for name, function in originals.items():
            setattr(dist, name, function)

    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, {"rank": rank, "computed": stats["computed"], "reused": stats["reused"], "distributed_calls": calls})
    if rank == 0:
        merged.save(output / "merged.safetensors")
        (output / "ranks.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
