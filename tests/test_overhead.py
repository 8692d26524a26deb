"""The engine's work on top of a reused step, counted in operators rather than timed (timing on a
shared CPU cannot resolve a few per cent; an extra copy or allocation per reuse shows up here)."""

from __future__ import annotations

from collections import Counter

import torch

import smoothcache
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
