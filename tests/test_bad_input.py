"""Bad input is a clear error and leaves the model exactly as it was."""

from __future__ import annotations

import json

import pytest
import torch
from test_dit_pipeline import ATTN, FF, generate

import smoothcache
from helpers import assert_pristine
from smoothcache import AdapterError, ScheduleError, WrapError
from smoothcache.reference.pipelines import sample_dit
from smoothcache_core import handle_of


def test_unknown_adapter_lists_registered_ones(dit_pipe):
    with pytest.raises(AdapterError, match=r"unknown adapter 'nope'; registered adapters: \[.*'dit'"):
        smoothcache.wrap(dit_pipe.transformer, adapter="nope")
    assert_pristine(dit_pipe.transformer)


def test_adapter_that_does_not_match():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(AdapterError, match="adapter 'dit' does not match Sequential"):
        smoothcache.wrap(model, adapter="dit")
    with pytest.raises(AdapterError, match="no registered adapter matches Sequential"):
        smoothcache.wrap(model)
    assert_pristine(model)


def test_adapter_of_wrong_type(dit_pipe):
    with pytest.raises(AdapterError, match="adapter must be a registered name"):
        smoothcache.wrap(dit_pipe.transformer, adapter=42)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"attn1": ATTN, "ff": FF[:-1]}, "different lengths"),
        ({"attn1": ATTN, "mlp": FF}, r"schedule keys \['mlp'\] match no component.*types \['attn1', 'ff'\]"),
        ({"attn1": [0] + ATTN[1:]}, "reuses at step 0"),
        ({"attn1": [1, 2, 1]}, "only 0 .reuse. and 1 .compute."),
        ({"attn1": "1010"}, "non-empty list of 0/1"),
        ({}, "no components"),
        ([1, 0, 1], "must be a Schedule, a dict, a path"),
        ({"format": "smoothcache.schedule", "version": 9, "components": {"attn1": ATTN}}, "version 9 is not supported"),
        ({"format": "other", "components": {}}, "unknown schedule format"),
        ({"format": "smoothcache.schedule", "version": 1, "components": {"attn1": ATTN}, "extra": 1}, "unknown schedule fields"),
        (
            {"format": "smoothcache.schedule", "version": 1, "components": {"attn1": ATTN}, "provenance": {"adapter": "stable-audio"}},
            "made for adapter 'stable-audio'",
        ),
        (3.5, "must be a Schedule, a dict, a path"),
    ],
)
def test_bad_schedule_is_refused_before_anything_changes(dit_pipe, schedule, message):
    reference = generate(dit_pipe, 0)
    with pytest.raises(ScheduleError, match=message):
        smoothcache.wrap(dit_pipe.transformer, schedule=schedule)
    assert_pristine(dit_pipe.transformer)
    assert torch.equal(generate(dit_pipe, 0), reference)


def test_corrupt_or_missing_json_file(dit_pipe, tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"attn1": [1, 0,')
    with pytest.raises(ScheduleError, match="not valid JSON"):
        smoothcache.wrap(dit_pipe.transformer, schedule=corrupt)
    with pytest.raises(ScheduleError, match="cannot read schedule"):
        smoothcache.wrap(dit_pipe.transformer, schedule=tmp_path / "missing.json")
    assert_pristine(dit_pipe.transformer)


def test_wrapping_twice_is_refused_and_the_first_wrap_keeps_working(dit_pipe):
    with smoothcache.wrap(dit_pipe.transformer, schedule={"attn1": ATTN, "ff": FF}) as handle:
        with pytest.raises(WrapError, match="already wrapped"):
            smoothcache.wrap(dit_pipe.transformer)
        generate(dit_pipe, 0)
        assert handle.stats()["reused"] > 0
    assert_pristine(dit_pipe.transformer)
    with smoothcache.wrap(dit_pipe.transformer):  # wrapping again after unwrap is fine
        pass


def test_non_module_input():
    with pytest.raises(WrapError, match="expected a torch.nn.Module .e.g. pipe.transformer., got str"):
        smoothcache.wrap("model.safetensors")


def test_failure_while_installing_undoes_the_gates_already_installed(dit_pipe, monkeypatch):
    """An installer that fails half-way (here the fourth) leaves no gate behind."""
    from smoothcache.builtin.dit import DiTAdapter

    class FailingAdapter(DiTAdapter):
        name = "failing"

        def components(self, model):
            components = super().components(model)
            broken = components[3]

            def install(make_gate):
                raise RuntimeError("cannot install")

            components[3] = type(broken)(broken.key, broken.kind, broken.name, broken.block_kind, broken.index, install, broken.module)
            return components

    with pytest.raises(RuntimeError, match="cannot install"):
        smoothcache.wrap(dit_pipe.transformer, adapter=FailingAdapter(), schedule={"attn1": ATTN, "ff": FF})
    assert_pristine(dit_pipe.transformer)
    assert handle_of(dit_pipe.transformer) is None


@pytest.mark.parametrize("branches", [0, -1, 1.5, "2", True, None])
def test_branches_must_be_a_positive_integer(dit_pipe, branches):
    with pytest.raises(WrapError, match="branches must be a positive integer"):
        smoothcache.wrap(dit_pipe.transformer, schedule={"attn1": ATTN}, sync_free=True, branches=branches)
    assert_pristine(dit_pipe.transformer)


def test_copying_a_wrapped_model_is_refused_until_unwrap(dit_pipe, tmp_path):
    """A copy would carry gates bound to the original (and pickle cannot store them): refuse, name the fix."""
    import copy
    import io
    import pickle

    transformer = dit_pipe.transformer
    handle = smoothcache.wrap(transformer, schedule={"attn1": ATTN, "ff": FF})
    for attempt in (
        lambda: copy.deepcopy(transformer),
        lambda: copy.copy(transformer),
        lambda: pickle.dumps(transformer),
        lambda: torch.save(transformer, io.BytesIO()),
        lambda: copy.deepcopy(transformer.transformer_blocks[0]),  # a part that holds a gated module
    ):
        with pytest.raises(WrapError, match=r"wrapped by smoothcache.*handle.unwrap\(\) first"):
            attempt()
    torch.save(transformer.state_dict(), io.BytesIO())  # weights need no unwrap
    transformer.save_pretrained(tmp_path)
    handle.unwrap()
    assert_pristine(transformer)
    twin = copy.deepcopy(transformer)
    assert torch.equal(generate(dit_pipe, 0), generate(type(dit_pipe)(twin, dit_pipe.vae, dit_pipe.scheduler), 0))


@pytest.mark.parametrize(
    ("macs", "speedup", "message"),
    [("0.5", None, "macs must be a finite number, got '0.5'"), (None, float("inf"), "speedup must be a finite number"),
     (None, 0.5, "speedup must be >= 1"), (True, None, "macs must be a finite number, got True"), (None, None, "give exactly one")],
)  # fmt: skip
def test_a_bad_budget_is_refused_before_anything_runs(dit_pipe, macs, speedup, message):
    profile = smoothcache.calibrate(dit_pipe, lambda: _generate(dit_pipe))
    generations = []
    with pytest.raises(smoothcache.ScheduleError, match=message):
        smoothcache.select_schedule(dit_pipe, profile, lambda: generations.append(1), macs=macs, speedup=speedup)
    with pytest.raises(smoothcache.ScheduleError, match=message):
        profile.schedule(macs=macs, speedup=speedup) if macs is not None or speedup is not None else profile.schedule()
    assert generations == []


def _generate(pipe, seed: int = 0):
    return pipe(class_labels=[1], num_inference_steps=4, generator=torch.manual_seed(seed), output_type="pt").images


def test_another_models_profile_is_refused_before_any_generation(dit_pipe):
    from smoothcache.reference.pipelines import dit_transformer

    other = dit_transformer("tiny", num_classes=10)  # another configuration of the same class
    profile = smoothcache.calibrate(other, lambda: sample_dit(other, 4))
    generations = []
    with pytest.raises(smoothcache.ProfileError, match="calibrate this model"):
        smoothcache.select_schedule(dit_pipe, profile, lambda: generations.append(1), macs=0.6)
    with pytest.raises(smoothcache.ProfileError, match="calibrate this model"):
        smoothcache.probe(dit_pipe, profile, lambda: generations.append(1), probes=2)
    assert generations == []
    assert_pristine(dit_pipe.transformer)


def test_a_profile_without_components_is_refused_when_made_or_loaded():
    from safetensors.torch import save

    from smoothcache_core.profile import ErrorProfile

    empty = torch.zeros(0, 1, 4, dtype=torch.float64)
    with pytest.raises(smoothcache.ProfileError, match="no components"):
        ErrorProfile((), empty, empty, empty.long(), (), 0)
    header = {"format": "smoothcache.profile", "version": 1, "components": [], "evaluation_macs": 0}
    data = save(
        {"sum": empty, "sum_sq": empty, "count": empty.long(), "macs": torch.zeros(0, dtype=torch.int64)},
        {"smoothcache": json.dumps(header)},
    )
    with pytest.raises(smoothcache.ProfileError, match="no components"):
        ErrorProfile.from_bytes(data)
