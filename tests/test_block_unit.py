"""The block unit: whole blocks cached as their residual (output − input), on real pipelines.

Nothing skipped is bit-identical; a reused block returns its new input plus the residual it added when
it last computed (per stream for two-stream blocks); the unit travels from calibration through the
profile file and the schedule to ``wrap``; a mismatch is refused with the model left as it was.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import smoothcache
from helpers import assert_pristine
from smoothcache import ProfileError, Schedule, ScheduleError
from smoothcache.cli import main
from smoothcache.reference.zoo import pipelines
from smoothcache_core import BlockAdapter, Component, ForwardArgument

STEPS = 8
TABLE = [1, 1, 0, 0, 1, 0, 1, 1]


def generate(pipe, seed: int = 0):
    return lambda: pipe(class_labels=[1, 2], num_inference_steps=STEPS, generator=torch.manual_seed(seed), output_type="pt").images


def _record_calls(block: nn.Module, seen: list) -> torch.utils.hooks.RemovableHandle:
    """Keep every call's tensor arguments (by position or name) and its output, cloned."""

    def record(_module, args, kwargs, output):
        inputs = {**dict(enumerate(args)), **kwargs}
        clone = (lambda v: v.clone()) if isinstance(output, torch.Tensor) else (lambda v: tuple(t.clone() for t in v))
        seen.append(({k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}, clone(output)))

    return block.register_forward_hook(record, with_kwargs=True)


def test_dit_blocks_are_exact_when_computing_and_add_the_kept_residual_when_reusing(dit_pipe):
    model = dit_pipe.transformer
    reference = generate(dit_pipe)()
    with smoothcache.wrap(dit_pipe, unit="block") as handle:
        assert torch.equal(generate(dit_pipe)(), reference)  # nothing skipped: bit-identical
        assert [c.key for c in handle.components] == ["transformer_blocks.0", "transformer_blocks.1"]
        assert {c.kind for c in handle.components} == {"block"} and handle.stats()["computed"] == 2 * STEPS
    assert_pristine(model)

    seen: list = []
    hook = _record_calls(model.transformer_blocks[1], seen)
    try:
        with smoothcache.wrap(dit_pipe, schedule=Schedule({"block": TABLE}, {"unit": "block"})) as handle:
            cached = generate(dit_pipe)()
            stats = handle.stats()
    finally:
        hook.remove()
    assert stats["computed"] == 2 * TABLE.count(1) and stats["reused"] == 2 * TABLE.count(0) and stats["macs_skipped"] > 0
    computed_in, computed_out = seen[1]
    residual = computed_out - computed_in[0]
    for step in (2, 3):  # reused after step 1: the new input plus step 1's residual
        inputs, output = seen[step]
        assert torch.equal(output, inputs[0] + residual)
    assert not torch.equal(seen[2][0][0], computed_in[0])  # the input did move: the block did not just repeat
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)
    assert torch.equal(generate(dit_pipe)(), reference)
    assert_pristine(model)


def test_the_unit_travels_from_calibration_to_wrap_and_a_mismatch_is_refused(dit_pipe, tmp_path):
    model = dit_pipe.transformer
    profile = smoothcache.calibrate(dit_pipe, generate(dit_pipe, seed=3), unit="block")
    assert profile.unit == "block" and [c.kind for c in profile.components] == ["block", "block"]
    profile.save(tmp_path / "p.safetensors")
    loaded = smoothcache.ErrorProfile.load(tmp_path / "p.safetensors")
    assert loaded.unit == "block" and torch.equal(loaded.sums, profile.sums)
    components = smoothcache.calibrate(dit_pipe, generate(dit_pipe, seed=3))
    assert components.unit == "component"
    with pytest.raises(ProfileError, match="unit"):
        loaded.merge(components)

    schedule = profile.schedule(macs=0.6, fill="linear")
    assert schedule.provenance["unit"] == "block" and set(schedule.tables) == {"block"}
    schedule.save(tmp_path / "s.json")
    with smoothcache.wrap(dit_pipe, schedule=tmp_path / "s.json") as handle:  # the unit comes from the schedule
        generate(dit_pipe, seed=4)()
        assert handle.adapter.unit == "block" and handle.stats()["reused"] > 0
    with pytest.raises(ScheduleError, match="unit='block'"):
        smoothcache.wrap(dit_pipe, schedule=schedule, unit="component")
    assert_pristine(model)
    config = model.config
    latent = torch.randn(2, config.in_channels, config.sample_size, config.sample_size)
    labels, timestep = torch.tensor([1, 2]), torch.tensor([500, 500])
    report = smoothcache.mac_report(dit_pipe, schedule, lambda: model(latent, timestep=timestep, class_labels=labels))
    assert report.fraction == pytest.approx(schedule.provenance["mac_fraction"], rel=1e-6)

    selected = smoothcache.select_schedule(dit_pipe, profile, generate(dit_pipe, seed=5), macs=0.6)
    assert selected.provenance["unit"] == "block" and "uniform" in selected.provenance["selected_from"]
    assert_pristine(model)


def test_two_stream_blocks_keep_a_residual_per_stream():
    """FLUX: a double block returns (text, image), each its input plus its own residual; the single
    blocks too; a reused step adds each stream's residual to that stream's new input."""
    pipe = pipelines.BUILDERS["flux"](0)
    pipe.set_progress_bar_config(disable=True)
    steps = 5
    reference = pipelines.call("flux", pipe, seed=1, steps=steps)
    with smoothcache.wrap(pipe, unit="block") as handle:
        assert torch.equal(pipelines.call("flux", pipe, seed=1, steps=steps), reference)
        stacks = sorted({c.block_kind for c in handle.components})
    assert stacks == ["single_transformer_blocks", "transformer_blocks"]

    double, single = pipe.transformer.transformer_blocks[0], pipe.transformer.single_transformer_blocks[0]
    seen: dict[str, list] = {"double": [], "single": []}
    hooks = [_record_calls(double, seen["double"]), _record_calls(single, seen["single"])]
    try:
        with smoothcache.wrap(pipe, schedule=Schedule({"block": [1, 1, 0, 1, 1]}, {"unit": "block"})) as handle:
            cached = pipelines.call("flux", pipe, seed=1, steps=steps)
            assert handle.stats()["reused"] == len(handle.components)
    finally:
        for hook in hooks:
            hook.remove()
    for calls in seen.values():
        (computed_in, computed_out), (reused_in, reused_out) = calls[1], calls[2]
        assert isinstance(reused_out, tuple) and len(reused_out) == 2
        for position, name in enumerate(("encoder_hidden_states", "hidden_states")):  # diffusers returns (text, image)
            assert torch.equal(reused_out[position], reused_in[name] + (computed_out[position] - computed_in[name]))
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)
    assert_pristine(pipe.transformer)


class _Streams(nn.Module):
    """A two-stream block whose streams have one shape, returned swapped (text first); the last one
    passes the text stream through untouched."""

    def __init__(self, width: int, last: bool) -> None:
        super().__init__()
        self.ff, self.ff_context, self.last = nn.Linear(width, width), nn.Linear(width, width), last

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, t: torch.Tensor):
        hidden_states = hidden_states + 0.1 * self.ff(hidden_states) * t
        if not self.last:
            encoder_hidden_states = encoder_hidden_states + 0.1 * self.ff_context(encoder_hidden_states)
        return encoder_hidden_states, hidden_states


class _TwoStreamModel(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Streams(width, last=False), _Streams(width, last=True)])

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            text, x = block(x, encoder_hidden_states=text, t=t)
        return x


class _StreamsAdapter:
    name = "two-stream-toy"

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, _TwoStreamModel)

    def components(self, model: nn.Module) -> list[Component]:
        return Component.of_blocks(model.blocks, (("ff", "ffn"), ("ff_context", "ffn_context")))

    def step_source(self, model: nn.Module) -> ForwardArgument:
        return ForwardArgument("t", 1)


def test_streams_of_one_shape_pair_with_their_own_input_and_a_passed_through_stream_follows_its_input():
    torch.manual_seed(0)
    model = _TwoStreamModel().eval()
    x, text = torch.randn(2, 4, 8), 10 * torch.randn(2, 4, 8)  # one shape; far apart, so a wrong pairing shows

    def run(steps: int = 4) -> list[torch.Tensor]:
        outputs, state = [], x
        with torch.no_grad():
            for step in range(steps):
                state = model(state, torch.tensor(1.0 - step / steps), text + step)
                outputs.append(state)
        return outputs

    reference = run()
    adapter = BlockAdapter(_StreamsAdapter())
    assert [c.key for c in adapter.components(model)] == ["blocks.0", "blocks.1"]
    with smoothcache.wrap(model, adapter=adapter, schedule=Schedule({"block": [1, 0, 0, 1]}, {"unit": "block"})) as handle:
        cached = run()
        assert handle.stats()["reused"] == 4
    assert torch.equal(cached[0], reference[0])
    # both blocks reused at step 1: the image stream got exactly the two image residuals of step 0
    residuals = reference[0] - x
    torch.testing.assert_close(cached[1], cached[0] + residuals)
    assert (cached[1] - reference[1]).abs().max() < 0.5  # the text stream (10x larger) never leaked in
    assert_pristine(model)


def test_cli_calibrates_whole_blocks_and_generates_with_them(dit_pipeline_dir, tmp_path, capsys):
    profile, schedule = tmp_path / "p.safetensors", tmp_path / "s.json"
    model = str(dit_pipeline_dir)
    assert main(["calibrate", model, "--steps", "6", "--samples", "1", "--unit", "block", "-o", str(profile)]) == 0
    assert "2 blocks, 6 steps" in capsys.readouterr().out
    assert main(["schedule", str(profile), "--macs", "0.6", "-o", str(schedule)]) == 0
    assert json.loads(schedule.read_text())["provenance"]["unit"] == "block"
    assert main(["generate", model, "--schedule", str(schedule), "--samples", "1", "-o", str(tmp_path / "out")]) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["reused"] > 0 and stats["computed"] + stats["reused"] == 2 * 6


class _InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ff = nn.Linear(8, 8)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, t: torch.Tensor) -> tuple:
        hidden_states += self.ff(hidden_states)
        return encoder_hidden_states, hidden_states


def test_bad_units_and_models_without_block_residuals_are_refused_clearly():
    model = _TwoStreamModel().eval()
    with pytest.raises(smoothcache.WrapError, match="unit must be one of"):
        smoothcache.wrap(model, adapter=_StreamsAdapter(), unit="blocks")
    assert_pristine(model)

    from smoothcache.reference.pipelines import mmdit

    processors = mmdit("tiny")  # Open-Sora 2.0: its attention is gated through the block's processor
    with pytest.raises(smoothcache.AdapterError, match="unit='component'"):
        smoothcache.wrap(processors, unit="block")
    assert_pristine(processors)

    model.blocks[0] = _InPlace()
    inputs = (torch.randn(1, 4, 8), torch.tensor(1.0), torch.randn(1, 4, 8))
    keeping = Schedule({"block": [1, 0]}, {"unit": "block"})  # the first step keeps its residual
    with (
        smoothcache.wrap(model, adapter=_StreamsAdapter(), schedule=keeping),
        torch.no_grad(),
        pytest.raises(smoothcache.AdapterError, match="in place"),
    ):
        model(*inputs)
    assert_pristine(model)


def test_blocks_with_their_gates_compile_whole_and_match_eager(dit_pipe):
    """Each block traced whole (``fullgraph=True``) with its residual gate, reusing with the linear
    fill: the same output as eager, the same reuse counts."""
    import torch._dynamo

    schedule = Schedule({"block": TABLE}, {"unit": "block"}, "linear")
    with smoothcache.wrap(dit_pipe, schedule=schedule) as handle:
        eager = generate(dit_pipe)()
        reused = handle.stats()["reused"]
    blocks = list(dit_pipe.transformer.transformer_blocks)
    torch._dynamo.reset()
    try:
        for block in blocks:
            block.compile(backend="eager", fullgraph=True)
        with torch._dynamo.config.patch(cache_size_limit=64), smoothcache.wrap(dit_pipe, schedule=schedule) as handle:
            compiled = generate(dit_pipe)()
            assert handle.stats()["reused"] == reused
    finally:
        for block in blocks:
            block._compiled_call_impl = None
        torch._dynamo.reset()
    assert torch.equal(compiled, eager)
