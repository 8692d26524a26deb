"""Caching whole blocks (their residual) against caching attention and feed-forward, at equal steps.

A minimal hand-written cache keeps each block's residual (output minus input) on FORA's compute
steps and, on the others, adds the last residual (or the line through the last two) to the block's
new input, skipping the whole block (norms, modulation, residual adds) where smoothcache's
components skip attention and feed-forward only. It was the measurement behind smoothcache's block
unit (``unit="block"``), which runs exactly its operators (``tests/test_overhead.py``); the
frontier and equal-time benchmarks measure the unit itself. On the trained digits DiT with DDIM
50: fidelity on the frontier's evaluation set (PSNR to uncached, seeds 1000..) and wall-time
speedup on its timed subset (each variant against an uncached run just before it, 3 rounds,
medians).

Run: ``python -m benchmarks.block_level``. Writes benchmarks/results/block_level.json.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

import smoothcache
from benchmarks.common import print_table, timed, write_results
from benchmarks.frontier import CASES
from smoothcache import schedules
from smoothcache_core.metrics import fidelity

INTERVALS = (2, 3, 4)
ROUNDS = 3


class BlockResidualCache:
    """FORA's interval over whole blocks: compute every ``interval`` steps (and the last), else add
    the kept residual, or with ``fill="linear"`` the line through the last two, to the new input."""

    def __init__(self, model: torch.nn.Module, blocks: list[torch.nn.Module], steps: int, interval: int, fill: str) -> None:
        self.model, self.blocks, self.steps, self.interval, self.fill = model, blocks, steps, interval, fill

    def __enter__(self) -> BlockResidualCache:
        evaluations = [0]
        self.hook = self.model.register_forward_pre_hook(lambda *_: evaluations.__setitem__(0, evaluations[0] + 1))
        for block in self.blocks:
            self._patch(block, evaluations)
        return self

    def _patch(self, block: torch.nn.Module, evaluations: list[int]) -> None:
        original, kept = block.forward, []
        steps, interval, linear = self.steps, self.interval, self.fill == "linear"

        def forward(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            step = (evaluations[0] - 1) % steps
            if step % interval == 0 or step == steps - 1:
                output = original(hidden_states, *args, **kwargs)
                kept[:] = [*kept[-1:], (step, output - hidden_states)]
                return output
            if linear and len(kept) == 2:
                (before, older), (last, newer) = kept
                return hidden_states + torch.lerp(older, newer, 1 + (step - last) / (last - before))
            return hidden_states + kept[-1][1]

        block.forward = forward

    def __exit__(self, *_: object) -> None:
        for block in self.blocks:
            del block.forward
        self.hook.remove()


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_grad_enabled(False)
    case = CASES["digits-ddim"]()
    model, steps = case.model, case.steps
    blocks = list(model.transformer_blocks)
    keys = set(schedules.profile(case.profile).schedule(alpha=0.0).tables)
    variants: dict[str, Callable[[], AbstractContextManager]] = {}
    for interval in INTERVALS:
        variants[f"blocks n={interval} linear"] = lambda n=interval: BlockResidualCache(model, blocks, steps, n, "linear")
        variants[f"components n={interval} linear"] = lambda n=interval: smoothcache.wrap(
            model, schedule=smoothcache.Schedule.fora(steps, n, keys, "linear")
        )
        variants[f"blocks n={interval} reuse"] = lambda n=interval: BlockResidualCache(model, blocks, steps, n, "reuse")
    reference = case.generate()
    quality = {}
    for name, enable in variants.items():
        with enable():
            quality[name] = fidelity(reference.float(), case.generate().float(), case.modality, case.data_range)["psnr_db"]
    sample = case.timed
    assert sample is not None
    sample()
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, enable in variants.items():
            uncached = timed(sample)[1]
            with enable():
                ratios[name].append(timed(sample)[1] / uncached)
    rows = [[name, 1 / statistics.median(ratios[name]), quality[name]] for name in variants]
    print_table(["variant (digits DDIM 50)", "time speedup", "psnr_db"], rows)
    path = write_results(
        "block_level",
        {"case": case.description, "variants": {name: {"time_speedup": speedup, "psnr_db": psnr} for name, speedup, psnr in rows}},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
