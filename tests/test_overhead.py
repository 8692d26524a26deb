"""The engine's work on top of a reused step, counted in operators rather than timed (timing on a
shared CPU cannot resolve a few per cent; an extra copy or allocation per reuse shows up here)."""

from __future__ import annotations

from collections import Counter

import torch

import smoothcache
from benchmarks.block_level import BlockResidualCache
from benchmarks.overhead import HandWrittenFora, extra_operators, operator_counts
from smoothcache.reference.pipelines import dit_transformer, sample_dit

STEPS = 8
#: Larger than the timestep batch (2) the engine reads once per evaluation, smaller than any activation.
ACTIVATION = 64


def test_a_reused_step_costs_the_engine_no_tensor_work_beyond_reading_the_timestep():
    torch.set_grad_enabled(False)
    try:
        transformer = dit_transformer("tiny", seed=0)
        modules = [m for block in transformer.transformer_blocks for m in (block.attn1, block.ff)]

        def engine(fill: str = "reuse", min_elements: int = ACTIVATION) -> Counter[str]:
            def run():
                with smoothcache.wrap(transformer, schedule=smoothcache.Schedule.fora(STEPS, 2, ["attn1", "ff"], fill=fill)):
                    return sample_dit(transformer, STEPS)

            run()  # the first run measures each component's MACs once
            return operator_counts(run, min_elements)

        def hand_written():
            with HandWrittenFora(modules, STEPS):
                return sample_dit(transformer, STEPS)

        floor = operator_counts(hand_written, ACTIVATION)
        assert floor["aten::addmm"] > 0 and floor["aten::layer_norm"] > 0  # the filter keeps the model's work
        # On activations, the engine does exactly what the hand-written cache does: no copy, clone or allocation.
        assert extra_operators(engine(), floor) == {}
        # The linear fill adds one lerp per reused call that has two computed values behind it
        # (steps 3 and 5 of 8; attn1 and ff in 2 blocks), and nothing else.
        assert extra_operators(engine("linear"), floor) == {"aten::lerp": 2 * 2 * 2}
        # All that remains is reading the timestep once per evaluation: a few scalar operators.
        scalar_work = extra_operators(engine(min_elements=0), operator_counts(hand_written))
        assert 0 < sum(scalar_work.values()) <= 40 * STEPS, scalar_work
    finally:
        torch.set_grad_enabled(True)


def test_whole_blocks_do_what_a_hand_written_block_cache_does():
    """The block unit on activations: an all-compute wrap runs exactly the model's operators; FORA-2
    runs exactly the hand-written residual cache's (a subtraction per block at computed steps, an
    addition at reused ones)."""
    torch.set_grad_enabled(False)
    try:
        transformer = dit_transformer("tiny", seed=0)
        blocks = list(transformer.transformer_blocks)

        def wrapped(table: list[int]):
            def run():
                with smoothcache.wrap(transformer, schedule=smoothcache.Schedule({"block": table}, {"unit": "block"})):
                    return sample_dit(transformer, STEPS)

            run()  # the first run measures each block's MACs once
            return operator_counts(run, ACTIVATION)

        def hand_written():
            with BlockResidualCache(transformer, blocks, STEPS, 2, "reuse"):
                return sample_dit(transformer, STEPS)

        assert extra_operators(wrapped([1] * STEPS), operator_counts(lambda: sample_dit(transformer, STEPS), ACTIVATION)) == {}
        fora = [1, 0, 1, 0, 1, 0, 1, 1]  # what the hand-written cache does with interval 2
        assert extra_operators(wrapped(fora), operator_counts(hand_written, ACTIVATION)) == {}
    finally:
        torch.set_grad_enabled(True)
