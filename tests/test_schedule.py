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
                result.append(
                    Component.of_module(module, key=f"{stack}.{index}.{name}", kind=name, name=name, block_kind=stack, index=index)
                )
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
    data = {
        "format": "smoothcache.schedule",
        "version": 1,
        "components": {"attn": [1, 0, 1]},
        "provenance": {"alpha": 0.18, "adapter": "dit"},
    }
    schedule = Schedule.from_dict(data)
    assert schedule.provenance == {"alpha": 0.18, "adapter": "dit"}
    assert schedule.to_dict() == data


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    """A write that fails half-way leaves the old file whole and nothing else: a writer that opened the
    target itself would leave half a file."""
    from smoothcache_core import files

    target = tmp_path / "nested" / "s.json"
    old = Schedule({"attn": [1, 0, 1]})
    old.save(target)
    assert [p.name for p in target.parent.iterdir()] == ["s.json"]

    def half_then_fail(file, content):
        file.write(content[: len(content) // 2])
        file.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "_write_all", half_then_fail)
    with pytest.raises(OSError, match=f"No space left on device: '{target}'"):  # the user's path, not a temporary one
        Schedule({"attn": [1, 1, 0, 1] * 50}).save(target)
    assert Schedule.load(target) == old
    assert [p.name for p in target.parent.iterdir()] == ["s.json"]


def test_a_killed_save_leaves_the_old_file_whole(tmp_path):
    """The process dies half-way through writing (no exception handler runs): the target is untouched."""
    import subprocess
    import sys
    import textwrap

    target = tmp_path / "s.json"
    old = Schedule({"attn": [1, 0, 1]})
    old.save(target)
    script = textwrap.dedent(
        f"""
        import os, signal
        from smoothcache import Schedule
        from smoothcache_core import files

        def half_then_die(file, content):
            file.write(content[: len(content) // 2])
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        files._write_all = half_then_die
        Schedule({{"attn": [1, 1, 0, 1] * 50}}).save({str(target)!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9
    assert Schedule.load(target) == old


def test_overwriting_keeps_permissions_and_writes_through_symlinks(tmp_path):
    import os
    import stat

    target = tmp_path / "real.json"
    Schedule({"attn": [1, 0, 1]}).save(target)
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    new = Schedule({"attn": [1, 1, 1]})
    new.save(link)
    assert link.is_symlink() and Schedule.load(target) == new
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        new.save(tmp_path)


def test_an_interrupted_plot_leaves_no_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from smoothcache.plots import schedule_heatmap

    def interrupted(self, file, **kwargs):
        file.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        schedule_heatmap(Schedule({"attn": [1, 0, 1]}), tmp_path / "s.png")
    assert list(tmp_path.iterdir()) == []


def test_a_schedule_cannot_change_after_validation_and_is_hashable():
    import numpy as np

    schedule = Schedule({"attn": np.array([1, 0, 1]), "mlp": [np.int64(1), np.int8(1), True]}, {"made": {"by": ["x"]}})
    assert schedule.tables == {"attn": (1, 0, 1), "mlp": (1, 1, 1)}
    with pytest.raises(TypeError):
        schedule.tables["attn"] = (1, 1, 1)
    with pytest.raises(TypeError):
        schedule.provenance["made"]["by"] = "y"
    with pytest.raises(AttributeError):
        schedule.fill = "linear"
    twin = Schedule.from_dict(json.loads(json.dumps(schedule.to_dict())))
    assert twin == schedule and hash(twin) == hash(schedule) and len({schedule, twin}) == 1
    assert Schedule({"attn": [1, 0, 1]}, {"a": 1}) != Schedule({"attn": [1, 0, 1]}, {"a": 2})
    for bad in ([1, 0.0], [1, np.float32(0)], [1, 2], [1, "0"]):
        with pytest.raises(ScheduleError, match="only 0 .reuse. and 1 .compute."):
            Schedule({"attn": bad})


def test_compiling_and_wrapping_a_long_schedule_takes_linear_time():
    import random
    import time

    def seconds(steps: int) -> float:
        table = [1] + [random.Random(steps).randint(0, 1) for _ in range(steps - 1)]
        parts = components()
        start = time.perf_counter()
        for fill in ("reuse", "linear"):
            Schedule({"attn": table, "mlp": table}, fill=fill).compile(parts)
        return time.perf_counter() - start

    seconds(1_000)  # warm-up
    small, large = seconds(10_000), seconds(100_000)
    assert large < 25 * small + 0.5, (small, large)  # quadratic would be 100x
    assert large < 5.0


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
    by_key = dict(zip((c.key for c in parts), compiled.compute, strict=False))
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
