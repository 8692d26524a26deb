"""torch.compile with caching on: whole model and regional (per block), as diffusers' compile_repeated_blocks."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters

import smoothcache
from smoothcache.reference.pipelines import dit_transformer, sample_dit

STEPS = 12


@pytest.fixture
def fresh_dynamo():
    dynamo.reset()
    counters.clear()
    limit = dynamo.config.cache_size_limit
    yield
    dynamo.config.cache_size_limit = limit
    dynamo.reset()


def eager_cached(model, schedule, steps: int = STEPS) -> torch.Tensor:
    with smoothcache.wrap(model, schedule=schedule):
        return sample_dit(model, steps)


def compiled_frames() -> int:
    """Graphs dynamo compiled since the fixture reset its counters (``frames.ok`` stays empty on torch 2.13)."""
    return counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("steps", [6, 18])
def test_regional_compile_recompiles_per_pattern_not_per_step(fresh_dynamo, steps):
    model = dit_transformer("tiny")
    schedule = smoothcache.Schedule.fora(steps, 3, ["attn1", "ff"])
    expected = eager_cached(model, schedule, steps)
    with smoothcache.wrap(model, schedule=schedule) as handle:
        patterns = handle.decision_patterns()
        dynamo.config.cache_size_limit = 2 * sum(patterns.values())
        for block in model.transformer_blocks:
            block.compile(backend="aot_eager", fullgraph=True)  # fullgraph: a graph break in a block fails
        first = sample_dit(model, steps)
        second = sample_dit(model, steps)
        stats = handle.stats()
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(first, second)
    assert sum(counters["graph_break"].values()) == 0
    # FORA n=3: compute and keep, reuse and keep, reuse and drop, compute at the last step. Each block
    # compiles once per pattern it meets, whatever the step count (x2 at most: block 0's input layout)
    assert patterns == {"blocks.0": 4, "blocks.1": 4}
    assert 0 < compiled_frames() <= 2 * sum(patterns.values())
    # compiled gates do not count; their calls are counted from the plan
    assert stats["computed"] + stats["reused"] == 2 * steps * 2 * 2
    assert stats["reused"] == 2 * 2 * 2 * schedule.tables["attn1"].count(0)


def test_whole_model_compile_has_no_graph_break(fresh_dynamo):
    model = dit_transformer("tiny")
    schedule = smoothcache.Schedule.fora(STEPS, 2, ["attn1", "ff"])
    expected = eager_cached(model, schedule)
    dynamo.config.cache_size_limit = 16
    compiled = torch.compile(model, backend="aot_eager")
    with smoothcache.wrap(compiled, schedule=schedule) as handle:  # the compiled wrapper's original is wrapped
        assert handle.model is model
        output = sample_dit(compiled, STEPS)
        patterns = handle.decision_patterns()
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    assert sum(counters["graph_break"].values()) == 0  # the timestep is read by an eager hook outside the graph
    assert 0 < compiled_frames() <= max(patterns.values())  # one graph per model-wide pattern


def test_inductor_on_cpu_matches_eager(fresh_dynamo):
    """Real code generation (inductor, gcc) for the blocks, caching on."""
    model = dit_transformer("tiny")
    schedule = smoothcache.Schedule.fora(6, 2, ["attn1", "ff"])
    expected = eager_cached(model, schedule, 6)
    with smoothcache.wrap(model, schedule=schedule) as handle:
        dynamo.config.cache_size_limit = 2 * sum(handle.decision_patterns().values())
        for block in model.transformer_blocks:
            block.compile()
        output = sample_dit(model, 6)
    torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-4)
