"""Schedule format v1, the original SmoothCache files, key resolution and compilation."""

from __future__ import annotations

import json

import pytest
from conftest import REFERENCE_SCHEDULES
from torch import nn

from smoothcache import Component, Schedule, ScheduleError


def components(stacks=("blocks",), names=("attn", "mlp"), depth=2) -> list[Component]:
    result = []
    for stack in stacks:
        for index in range(depth):
            for name in names:
                module = nn.Identity()
                result.append(Component.of_module(module, key=f"{stack}.{index}.{name}", kind=name, name=name, block_kind=stack, index=index))
    return result


@pytest.mark.parametrize("path", sorted(REFERENCE_SCHEDULES.glob("*.json")), ids=lambda p: p.name)
def test_every_original_file_loads_and_round_trips(path, tmp_path):
    original = json.loads(path.read_text())
    schedule = Schedule.load(path)
    assert dict(schedule.tables) == {key: tuple(values) for key, values in original.items()}
    assert schedule.steps == len(next(iter(original.values())))
    schedule.save(tmp_path / "copy.json")
    assert Schedule.load(tmp_path / "copy.json") == schedule
    assert json.loads((tmp_path / "copy.json").read_text())["format"] == "smoothcache.schedule"


def test_v1_keeps_provenance():
    data = {"format": "smoothcache.schedule", "version": 1, "components": {"attn": [1, 0, 1]}, "provenance": {"alpha": 0.18, "adapter": "dit"}}
    schedule = Schedule.from_dict(data)
    assert schedule.provenance == {"alpha": 0.18, "adapter": "dit"}
    assert schedule.to_dict() == data


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "nested" / "s.json"
    Schedule({"attn": [1, 0, 1]}).save(target)
    assert [p.name for p in target.parent.iterdir()] == ["s.json"]


def test_saved_files_get_umask_permissions_not_owner_only(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        Schedule({"attn": [1, 0, 1]}).save(tmp_path / "s.json")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o644


def test_resolution_most_specific_first():
    compiled = Schedule({"attn": [1, 0, 1], "attn-1": [1, 1, 1], "blocks.0.mlp": [1, 0, 0]}).compile(components())
    assert compiled.compute == ((True, False, True), (True, False, False), None, None)
    # keep a value only when the next step reuses it
    assert compiled.keep == ((True, False, False), (True, True, False), None, None)


def test_several_stacks_keep_their_types_apart():
    parts = components(stacks=("spatial", "temporal"))
    compiled = Schedule({"spatial.attn": [1, 0, 1], "mlp": [1, 1, 0, 1][:3], "temporal.attn-1": [1, 0, 0]}).compile(parts)
    by_key = dict(zip((c.key for c in parts), compiled.compute))
    assert by_key["spatial.0.attn"] == by_key["spatial.1.attn"] == (True, False, True)
    assert by_key["temporal.0.attn"] is None
    assert by_key["temporal.1.attn"] == (True, False, False)
    assert by_key["spatial.0.mlp"] == by_key["temporal.1.mlp"] == (True, True, False)
    with pytest.raises(ScheduleError, match=r"\['attn-1'\] match no component.*'spatial.attn'"):
        Schedule({"attn-1": [1, 0, 1]}).compile(parts)  # ambiguous between the stacks


def test_fora_computes_every_n_and_the_last_step():
    schedule = Schedule.fora(7, 3, ["attn"])
    assert schedule.tables["attn"] == (1, 0, 0, 1, 0, 0, 1)
    assert Schedule.fora(6, 2, ["attn"]).tables["attn"] == (1, 0, 1, 0, 1, 1)
    assert schedule.provenance["method"] == "fora-3"
