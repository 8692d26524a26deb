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


#: One zoo case per block shape: pre-norm (DiT), dual- and single-stream with followers (FLUX),
#: video with rotary positions (Wan), joint blocks of one width (SD3), two streams (Qwen-Image).
RECOMPILE_CASES = (
    "DiTTransformer2DModel",
    "FluxTransformer2DModel",
    "WanTransformer3DModel",
    "SD3Transformer2DModel",
    "QwenImageTransformer2DModel",
)


@pytest.mark.parametrize("cls", RECOMPILE_CASES)
def test_compiled_blocks_recompile_only_where_decisions_change(fresh_dynamo, cls):
    """With real gates (a schedule that reuses somewhere), each block compiled ``fullgraph`` is
    specialised on its components' decisions alone: the second guidance branch of a step and the
    next steps with the same decisions run the same graph (``error_on_recompile``), as diffusers'
    own compile tests call a model twice with the same inputs."""
    from smoothcache.reference.zoo import all_cases, build, default_timestep, first_output

    case = next(case for case in all_cases() if case.cls == cls)
    model = build(case)
    with smoothcache.wrap(model) as handle:
        names = sorted({component.name for component in handle.components})
        paths = {module: path for path, module in model.named_modules()}
        blocks = {}
        for component in handle.components:
            parts = paths[component.modules[0]].split(".")
            index = next(i for i, part in enumerate(parts) if part.isdigit())
            blocks.setdefault(".".join(parts[: index + 1]), model.get_submodule(".".join(parts[: index + 1])))
    table = [1, 1, 1, 0, 1, 1]  # compute (nothing kept) at steps 0 and 1; keep at 2; reuse at 3
    inputs = case.inputs(torch.Generator().manual_seed(0))
    make_timestep = case.make_timestep or (lambda t, kw: default_timestep(t, kw, case.latent))

    def evaluate(t: float) -> torch.Tensor:
        with torch.no_grad():
            return first_output(model(**inputs, **{case.timestep: make_timestep(t, inputs)}))

    for block in blocks.values():
        block.compile(backend="eager", fullgraph=True)
    try:
        with torch._dynamo.config.patch(cache_size_limit=64), smoothcache.wrap(model, schedule=dict.fromkeys(names, table)) as handle:
            first = evaluate(900.0)  # compiles every block for the decision of step 0
            with torch._dynamo.config.patch(error_on_recompile=True):
                assert torch.equal(evaluate(900.0), first)  # the second branch of step 0
                evaluate(800.0)  # step 1: the same decisions
                evaluate(800.0)
            for t in (700.0, 700.0, 600.0, 600.0):
                evaluate(t)
            assert handle.stats()["reused"] == 2 * len(handle.components)  # step 3, both branches
    finally:
        for block in blocks.values():
            block._compiled_call_impl = None


def test_torch_export_of_a_wrapped_model_works_where_nothing_is_cached_and_is_refused_otherwise():
    """``torch.export`` traces one evaluation: with an all-compute schedule it exports the model as it
    is; with a caching schedule it would freeze one step's decisions, so it is refused with the fix."""
    model = dit_transformer("tiny")
    latents = torch.randn(2, 4, 8, 8)
    kwargs = {"timestep": torch.tensor([500, 500]), "class_labels": torch.tensor([1, 1000])}
    with torch.no_grad():
        expected = model(latents, **kwargs).sample
    with smoothcache.wrap(model):
        exported = torch.export.export(model, (latents,), kwargs)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(latents, **kwargs).sample, expected)
    with smoothcache.wrap(model, schedule=smoothcache.Schedule.fora(STEPS, 2, ["attn1", "ff"])):
        with pytest.raises(Exception, match="torch.export of a model that smoothcache caches") as caught:
            torch.export.export(model, (latents,), kwargs)
        assert isinstance(caught.value, smoothcache.GenerationError) or isinstance(caught.value.__cause__, smoothcache.GenerationError)
