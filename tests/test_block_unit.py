"""The block unit: whole blocks cached as their residual (output − input), on real pipelines.

Nothing skipped is bit-identical; a reused block returns its new input plus the residual it added when
it last computed (per stream for two-stream blocks); the unit travels from calibration through the
profile file and the schedule to ``wrap``; a mismatch is refused with the model left as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

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
                state = model(state, torch.tensor(1.0 - step / steps), text)
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


def _reused_streams_match(calls: list, positions_and_names) -> None:
    """At the first reused call after a computed one, every output is its new input plus the residual
    that stream added when the block computed."""
    (computed_in, computed_out), (reused_in, reused_out) = calls[0], calls[1]
    for position, name in positions_and_names:
        torch.testing.assert_close(reused_out[position], reused_in[name] + (computed_out[position] - computed_in[name]))


def test_flux_blocks_pair_their_streams_by_name_under_compile_where_both_streams_have_one_shape():
    """FLUX's double blocks return (text, image). With 16 image tokens and 16 text tokens both
    streams have one shape, which no shape tells apart and a compiled block cannot measure: the
    streams diffusers registers for the block pair them, eagerly and compiled alike."""
    import torch._dynamo

    pipe = pipelines.BUILDERS["flux"](0)
    pipe.set_progress_bar_config(disable=True)
    side = 16  # 16 image tokens (VAE factor 2, 2x2 packing), as many as max_sequence_length's text tokens

    def call() -> torch.Tensor:
        return pipe(prompt="a cat", height=side, width=side, num_inference_steps=5, guidance_scale=3.5, max_sequence_length=16,
                    generator=torch.Generator().manual_seed(1), output_type="pt").images  # fmt: skip

    schedule = Schedule({"transformer_blocks.0": [1, 1, 0, 1, 1]}, {"unit": "block"})  # one double block reused once
    seen: list = []
    hook = _record_calls(pipe.transformer.transformer_blocks[0], seen)
    try:
        with smoothcache.wrap(pipe, schedule=schedule):
            eager = call()
    finally:
        hook.remove()
    assert seen[1][1][0].shape == seen[1][1][1].shape  # the two streams have one shape
    _reused_streams_match(seen[1:3], ((0, "encoder_hidden_states"), (1, "hidden_states")))
    blocks = [*pipe.transformer.transformer_blocks, *pipe.transformer.single_transformer_blocks]
    torch._dynamo.reset()
    try:
        for block in blocks:
            block.compile(backend="eager", fullgraph=True)
        with torch._dynamo.config.patch(cache_size_limit=64), smoothcache.wrap(pipe, schedule=schedule):
            compiled = call()
    finally:
        for block in blocks:
            block._compiled_call_impl = None
        torch._dynamo.reset()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


class _Pulled(nn.Module):
    """Returns (image, text): the image stream moves most of the way toward the text stream (a large
    update), the text stream barely moves. Each output is closer to the text input than the
    image output is to its own input, so pairing each output in turn with its closest input fails."""

    def __init__(self, width: int, pull: float, text_update: float) -> None:
        super().__init__()
        self.ff, self.pull, self.text_update = nn.Linear(width, width), pull, text_update

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, t: torch.Tensor):
        image = hidden_states + self.pull * (encoder_hidden_states - hidden_states) + 0.01 * self.ff(hidden_states) * t
        text = encoder_hidden_states + self.text_update * self.ff(encoder_hidden_states)
        return image, text


class _PulledModel(nn.Module):
    def __init__(self, pull: float, text_update: float = 0.01, width: int = 8) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Pulled(width, pull, text_update)])

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x, text = block(hidden_states=x, encoder_hidden_states=text, t=t)
        return x + text


class _PulledAdapter(_StreamsAdapter):
    name = "pulled-toy"

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, _PulledModel)

    def components(self, model: nn.Module) -> list[Component]:
        return Component.of_blocks(model.blocks, (("ff", "ffn"),))


def _run_pulled(model: nn.Module, steps: int = 3) -> None:
    x, text = (
        torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0)),
        torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(1)),
    )
    with torch.no_grad():
        for step in range(steps):
            x = model(x, torch.tensor(1.0 - step / steps), text)


def test_streams_of_one_shape_pair_by_the_assignment_that_moves_least_whatever_their_order():
    model = _PulledModel(pull=0.6).eval()
    seen: list = []
    hook = _record_calls(model.blocks[0], seen)
    try:
        with smoothcache.wrap(
            model, adapter=BlockAdapter(_PulledAdapter()), schedule=Schedule({"block": [1, 0, 1]}, {"unit": "block"})
        ) as handle:
            _run_pulled(model)
            assert handle.stats()["reused"] == 1
    finally:
        hook.remove()
    _reused_streams_match(seen[:2], ((0, "hidden_states"), (1, "encoder_hidden_states")))


def test_streams_of_one_shape_that_no_assignment_tells_apart_are_refused():
    model = _PulledModel(pull=0.5, text_update=0.0).eval()  # image moves to the middle: as close to either input
    model.blocks[0].forward = lambda hidden_states, encoder_hidden_states, t: (  # type: ignore[method-assign]
        (hidden_states + encoder_hidden_states) / 2,
        (hidden_states + encoder_hidden_states) / 2 + 0 * t,
    )
    with (
        smoothcache.wrap(model, adapter=BlockAdapter(_PulledAdapter()), schedule=Schedule({"block": [1, 0, 1]}, {"unit": "block"})),
        pytest.raises(smoothcache.AdapterError, match="ambiguous"),
    ):
        _run_pulled(model)
    del model.blocks[0].forward
    assert_pristine(model)


class _EditsInput(nn.Module):
    """Adds to its input in place and returns a new tensor: a reused step would not make that edit."""

    def __init__(self, returns_input: bool) -> None:
        super().__init__()
        self.ff, self.returns_input = nn.Linear(8, 8), returns_input

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, t: torch.Tensor) -> tuple:
        hidden_states += 0.1 * self.ff(hidden_states)
        return encoder_hidden_states, hidden_states if self.returns_input else hidden_states * 1.0


@pytest.mark.parametrize("returns_input", [False, True])
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_a_block_editing_its_input_in_place_is_refused_clearly(returns_input, mode):
    model = _TwoStreamModel().eval()
    model.blocks[0] = _EditsInput(returns_input)
    keeping = Schedule({"block": [1, 0]}, {"unit": "block"})  # the first step keeps its residual
    with mode():
        inputs = (torch.randn(1, 4, 8), torch.tensor(1.0), torch.randn(1, 4, 8))
    with (
        smoothcache.wrap(model, adapter=_StreamsAdapter(), schedule=keeping),
        mode(),
        pytest.raises(smoothcache.AdapterError, match="in place"),
    ):
        model(*inputs)
    assert_pristine(model)


class _Pair(NamedTuple):
    text: torch.Tensor
    image: torch.Tensor


class _Shaped(nn.Module):
    """Returns its two streams as a NamedTuple, a dict, or a dataclass."""

    def __init__(self, output: str) -> None:
        super().__init__()
        self.ff, self.ff_context, self.output = nn.Linear(8, 8), nn.Linear(8, 8), output

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, t: torch.Tensor) -> Any:
        image = hidden_states + 0.1 * self.ff(hidden_states) * t
        text = encoder_hidden_states + 0.1 * self.ff_context(encoder_hidden_states)
        if self.output == "namedtuple":
            return _Pair(text, image)
        if self.output == "dict":
            return {"text": text, "image": image}
        return _Streamed(text, image)


@dataclass
class _Streamed:
    text: torch.Tensor
    image: torch.Tensor


class _ShapedModel(nn.Module):
    def __init__(self, output: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Shaped(output)])

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        out = self.blocks[0](hidden_states=x, encoder_hidden_states=text, t=t)
        return out["image"] if isinstance(out, dict) else out.image


class _ShapedAdapter(_StreamsAdapter):
    name = "shaped-toy"

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, _ShapedModel)


@pytest.mark.parametrize("output", ["namedtuple", "dict"])
def test_blocks_returning_a_namedtuple_or_a_dict_are_cached_as_such(output):
    model = _ShapedModel(output).eval()
    x, text = torch.randn(2, 4, 8), 10 * torch.randn(2, 4, 8)  # streams far apart: each pairs with its own
    seen: list = []

    def record(_module, _args, kwargs, out):
        values = out if isinstance(out, dict) else out._asdict()
        seen.append(({k: v.clone() for k, v in kwargs.items()}, type(out), {k: v.clone() for k, v in values.items()}))

    hook = model.blocks[0].register_forward_hook(record, with_kwargs=True)
    try:
        with smoothcache.wrap(
            model, adapter=BlockAdapter(_ShapedAdapter()), schedule=Schedule({"block": [1, 0, 1]}, {"unit": "block"})
        ) as handle:
            with torch.no_grad():
                for step in range(3):
                    x = model(x, torch.tensor(1.0 - step / 3), text)
            assert handle.stats()["reused"] == 1
    finally:
        hook.remove()
    (computed_in, computed_type, computed_out), (reused_in, reused_type, reused_out) = seen[0], seen[1]
    assert computed_type is reused_type is (dict if output == "dict" else _Pair)
    for stream, name in (("image", "hidden_states"), ("text", "encoder_hidden_states")):
        torch.testing.assert_close(reused_out[stream], reused_in[name] + (computed_out[stream] - computed_in[name]))


def test_a_block_returning_a_dataclass_is_refused_clearly_at_its_first_call():
    model = _ShapedModel("dataclass").eval()
    with (
        smoothcache.wrap(model, adapter=BlockAdapter(_ShapedAdapter()), schedule=Schedule({"block": [1, 0, 1]}, {"unit": "block"})),
        torch.no_grad(),
        pytest.raises(smoothcache.AdapterError, match="returned a _Streamed; caching whole blocks needs"),
    ):
        model(torch.randn(2, 4, 8), torch.tensor(1.0), torch.randn(2, 4, 8))
    assert_pristine(model)


def test_two_expert_blocks_share_their_pairing_where_the_second_expert_reuses_at_its_first_step():
    """Wan 2.2 A14B with whole blocks: the calibrated schedule reuses at the second expert's first
    step, so its blocks add the residuals the first expert's twins kept, paired as those were."""
    pipe = pipelines.BUILDERS["wan22"](0)
    pipe.set_progress_bar_config(disable=True)
    steps, experts = 6, []
    hooks = [
        getattr(pipe, name).register_forward_pre_hook(lambda *_, n=name: experts.append(n)) for name in ("transformer", "transformer_2")
    ]
    try:
        with smoothcache.wrap(pipe, unit="block"):
            reference = pipelines.call("wan22", pipe, seed=1, steps=steps)
    finally:
        for hook in hooks:
            hook.remove()
    per_step = len(experts) // steps  # guidance as two calls per step
    switch = experts.index("transformer_2") // per_step
    assert 0 < switch < steps - 1
    table = [0 if step == switch else 1 for step in range(steps)]
    with smoothcache.wrap(pipe, schedule=Schedule({"block": table}, {"unit": "block"})) as handle:
        cached = pipelines.call("wan22", pipe, seed=1, steps=steps)
        assert handle.stats()["reused"] == per_step * len(handle.components)
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)
