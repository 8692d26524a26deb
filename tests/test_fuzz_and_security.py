"""Bad input, fuzzed: only smoothcache's own exceptions, never a crash inside torch, the model untouched.
And nothing unsafe: no pickle, no torch.load of user files, plugins that fail are named and skipped."""

from __future__ import annotations

import contextlib
import json
import re
from importlib import metadata
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

import smoothcache
from helpers import assert_pristine
from smoothcache import ErrorProfile, ProfileError, Schedule, ScheduleError
from smoothcache.plugins import AdapterRegistry
from smoothcache.reference.pipelines import dit_transformer
from smoothcache_core.profile import _read_metadata

ROOT = Path(__file__).parent.parent
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
MODEL = dit_transformer("tiny")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_values)
def test_any_json_is_a_schedule_or_a_schedule_error(data):
    try:
        schedule = Schedule.from_dict(data)
    except ScheduleError:
        return
    assert schedule.steps >= 1 and all(set(t) <= {0, 1} and t[0] == 1 for t in schedule.tables.values())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(tables=st.dictionaries(st.sampled_from(["attn1", "ff", "attn1-0", "blocks.1.ff", "mlp", "x"]), json_values, min_size=1, max_size=3))
def test_fuzzed_schedules_never_half_apply(tables):
    try:
        handle = smoothcache.wrap(MODEL, schedule=tables)
    except ScheduleError:
        assert_pristine(MODEL)
        return
    handle.unwrap()
    assert_pristine(MODEL)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_are_a_schedule_error(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "s.json"
    path.write_bytes(raw)
    with contextlib.suppress(ScheduleError):
        Schedule.load(path)


def valid_profile_bytes() -> bytes:
    components = tuple(smoothcache.plugins.registry().get("dit").components(MODEL))
    count = len(components)
    return ErrorProfile(
        tuple(c.spec for c in components),
        torch.rand(count, 2, 5, dtype=torch.float64),
        torch.rand(count, 2, 5, dtype=torch.float64),
        torch.full((count, 2, 5), 3),
        (10,) * count,
        100,
        {"adapter": "dit"},
    ).to_bytes()


VALID = valid_profile_bytes()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(position=st.integers(0, len(VALID) - 1), value=st.integers(0, 255), cut=st.booleans())
def test_corrupted_profiles_are_a_profile_error(position, value, cut):
    data = VALID[:position] if cut else VALID[:position] + bytes([value]) + VALID[position + 1 :]
    try:
        profile = ErrorProfile.from_bytes(data)
    except ProfileError:
        return
    assert profile.steps >= 2 and profile.schedule(alpha=0.5).steps == profile.steps


tensor_specs = st.sampled_from([torch.float64, torch.float32, torch.int64, torch.int8, torch.bool, torch.float16])


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=4), min_size=4, max_size=4),
    dtypes=st.lists(tensor_specs, min_size=4, max_size=4),
    header=st.dictionaries(
        st.sampled_from(["format", "version", "components", "evaluation_macs", "adapter", "steps"]), json_values, max_size=6
    ),
)
def test_profiles_with_wrong_shapes_dtypes_or_metadata_are_a_profile_error(shapes, dtypes, header):
    tensors = {
        name: (torch.ones(shape) if dtype != torch.bool else torch.ones(shape, dtype=torch.bool)).to(dtype)
        for name, shape, dtype in zip(("sum", "sum_sq", "count", "macs"), shapes, dtypes, strict=False)
    }
    document = {"format": "smoothcache.profile", "version": 1, **header}
    try:
        data = save_safetensors(tensors, metadata={"smoothcache": json.dumps(document)})
    except (ValueError, TypeError):
        return  # not even a file safetensors can write
    with pytest.raises(ProfileError):
        ErrorProfile.from_bytes(data)


def package_sources() -> list[Path]:
    folders = ("smoothcache", "smoothcache_core", "adapters", "plugins", "reference", "schedules")
    return [path for folder in folders for path in (ROOT / folder).rglob("*.py")]


def test_no_pickle_or_torch_load_anywhere_in_the_package():
    offenders = []
    for path in package_sources():
        text = path.read_text()
        for pattern in (
            r"^\s*(import|from) (pickle|cloudpickle|dill)\b",
            r"\bpickle\.(loads?|Unpickler)\b",
            r"torch\.load\(",
            r"weights_only\s*=\s*False",
        ):
            if re.search(pattern, text, re.MULTILINE):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert package_sources() and not offenders, offenders


def test_a_plugin_that_raises_on_import_is_named_and_the_others_load(monkeypatch):
    broken = metadata.EntryPoint(name="broken-adapter", value="smoothcache_no_such_module:plugin", group="smoothcache.adapters")
    real = metadata.entry_points

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        return found + [broken] if kwargs.get("group") == "smoothcache.adapters" else found

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    registry = AdapterRegistry()
    with pytest.warns(UserWarning, match="plugin 'broken-adapter'.*failed to import"):
        names = registry.names()
    assert {"dit", "stable-audio", "opensora"} <= set(names)
    assert any("broken-adapter" in problem for problem in registry.problems)


# -- hostile structure: what random bytes rarely reach ----------------------------------------------

hostile_json_texts = st.one_of(
    st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * depth),  # nesting far past the recursion limit
    st.integers(1, 100_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.integers(4_000, 10_000).map(lambda digits: '{"attn1": [1' + "0" * digits + "]}"),  # integers of thousands of digits
    st.sampled_from(["Infinity", "-Infinity", "NaN"]).map(lambda value: '{"attn1": [1, ' + value + "]}"),
    st.sampled_from(["[]", "1", "null", '"x"', "Infinity", '{"a": 1}']).map(
        lambda value: '{"format": "smoothcache.schedule", "version": 1, "components": {"attn1": [1, 0]}, "provenance": ' + value + "}"
    ),
    st.sampled_from(["[1]", "Infinity", "1e999", "true", '"1"']).map(
        lambda value: '{"format": "smoothcache.schedule", "version": ' + value + ', "components": {"attn1": [1, 0]}}'
    ),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(text=hostile_json_texts)
def test_hostile_schedule_files_are_a_schedule_error(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "s.json"
    path.write_text(text)
    try:
        schedule = Schedule.load(path)
    except ScheduleError:
        return
    assert schedule.steps >= 1


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw=st.binary(min_size=300, max_size=5000))
def test_longer_random_bytes_are_a_schedule_error(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "s.json"
    path.write_bytes(raw)
    with pytest.raises(ScheduleError):
        Schedule.load(path)


@pytest.mark.parametrize("reader", [Schedule.load, ErrorProfile.load])
def test_a_nul_byte_or_a_folder_as_path_is_our_error(reader, tmp_path):
    expected = ScheduleError if reader == Schedule.load else ProfileError
    for path in ("name\x00.json", tmp_path, tmp_path / "missing.json"):
        with pytest.raises(expected, match="cannot read"):
            reader(path)


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path, monkeypatch):
    from smoothcache_core import schedule as schedule_module

    path = tmp_path / "big.json"
    path.write_text(json.dumps({"attn1": [1, 0] * 600}))
    monkeypatch.setattr(schedule_module, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(json, "loads", lambda *_: pytest.fail("parsed a file over the limit"))
    with pytest.raises(ScheduleError, match=r"has 3,6\d\d bytes, more than the 1,000"):
        Schedule.load(path)


HEADER = json.loads(_read_metadata(VALID)["smoothcache"])
hostile_metadata = st.tuples(
    st.sampled_from(
        ["evaluation_macs", "generations", "adapter", "solver", "model_class", "probe_fill", "components", "config_fingerprint"]
    ),
    st.one_of(
        st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e300, -1, True, None, "x" * 9, 2**70]),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.lists(st.lists(st.one_of(st.integers(), st.text(max_size=2), st.floats()), max_size=6), max_size=3),
    ),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(field=hostile_metadata)
def test_list_valued_or_infinite_metadata_is_a_profile_error(field):
    from safetensors.torch import load as load_safetensors

    key, value = field
    header = {**HEADER, key: value}
    data = save_safetensors(load_safetensors(VALID), metadata={"smoothcache": json.dumps(header)})
    try:
        profile = ErrorProfile.from_bytes(data)
    except ProfileError:
        return
    # whatever loads is usable end to end
    ErrorProfile.from_bytes(profile.merge(profile).to_bytes()).schedule(alpha=0.3)
