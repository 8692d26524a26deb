"""Every CLI argument and output path is checked before the model is loaded: a typo must never cost a
calibration. Loading is replaced by a recorder that fails the command, so any work shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smoothcache import cli
from smoothcache_core import Schedule


@pytest.fixture
def loaded(monkeypatch, tmp_path) -> list[str]:
    """What the command loaded (a model or a profile); loading raises, so nothing after it runs."""
    attempts: list[str] = []

    def record(what: str, **_: object) -> None:
        attempts.append(what)
        raise RuntimeError(f"{what} was loaded")

    monkeypatch.setattr(cli, "load", record)
    monkeypatch.setattr(cli.ErrorProfile, "load", record)
    monkeypatch.chdir(tmp_path)
    Path("folder").mkdir()
    Path("a-file").write_text("not a folder")
    Path("corrupt.json").write_text("{")
    Schedule({"attn1": [1, 0, 1, 1]}).save("four.json")
    return attempts


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


CALIBRATE = ["calibrate", "MODEL", "-o", "p.safetensors"]
SCHEDULE = ["schedule", "p.safetensors", "-o", "s.json"]
GENERATE = ["generate", "MODEL", "--schedule", "four.json"]
COMPARE = ["compare", "MODEL", "--schedule", "four.json"]

BAD_VALUES = {
    "steps-zero": (CALIBRATE + ["--steps", "0"], "argument --steps: must be a positive integer, got 0"),
    "steps-negative": (GENERATE + ["--steps", "-4"], "argument --steps: must be a positive integer, got -4"),
    "steps-not-a-number": (COMPARE + ["--steps", "ten"], "argument --steps: must be a positive integer, got 'ten'"),
    "samples-zero": (CALIBRATE + ["--samples", "0"], "argument --samples: must be a positive integer, got 0"),
    "samples-negative": (GENERATE + ["--samples", "-1"], "argument --samples: must be a positive integer, got -1"),
    "probes-negative": (CALIBRATE + ["--probes", "-2"], "argument --probes: must be 0 or a positive integer, got -2"),
    "run-lengths-zero": (CALIBRATE + ["--run-lengths", "0"], "argument --run-lengths: must be a positive integer, got 0"),
    "lookahead-zero": (CALIBRATE + ["--lookahead", "0"], "argument --lookahead: must be a positive integer, got 0"),
    "schedule-lookahead-zero": (SCHEDULE + ["--alpha", "0.1", "--lookahead", "0"], "argument --lookahead: must be a positive integer"),
    "seed-negative": (COMPARE + ["--seed", "-1"], "argument --seed: must be 0 or a positive integer, got -1"),
    "labels-negative": (CALIBRATE + ["--labels", "3", "-1"], "argument --labels: must be 0 or a positive integer, got -1"),
    "alpha-negative": (SCHEDULE + ["--alpha", "-0.1"], "argument --alpha: must be a number >= 0, got -0.1"),
    "alpha-nan": (SCHEDULE + ["--alpha", "nan"], "argument --alpha: must be a number >= 0, got nan"),
    "speedup-below-one": (SCHEDULE + ["--speedup", "0.9"], "argument --speedup: must be a finite number >= 1"),
    "speedup-nan": (SCHEDULE + ["--speedup", "NaN"], "argument --speedup: must be a finite number >= 1"),
    "speedup-infinite": (SCHEDULE + ["--speedup", "inf"], "argument --speedup: must be a finite number >= 1 (1 = no caching), got inf"),
    "select-speedup-infinite": (
        ["select", "./missing-model", "p", "--speedup", "inf", "-o", "s.json"],
        "argument --speedup: must be a finite",
    ),
    "macs-zero": (SCHEDULE + ["--macs", "0"], "argument --macs: must be a fraction in (0, 1], got 0.0"),
    "macs-above-one": (SCHEDULE + ["--macs", "1.5"], "argument --macs: must be a fraction in (0, 1], got 1.5"),
    "macs-nan": (SCHEDULE + ["--macs", "nan"], "argument --macs: must be a fraction in (0, 1], got nan"),
    "select-macs-zero": (["select", "MODEL", "p", "--macs", "0", "-o", "s.json"], "argument --macs: must be a fraction in (0, 1], got 0.0"),
    "select-negative-seed": (["select", "MODEL", "p", "--macs", "0.5", "--seed", "-1", "-o", "s.json"], "argument --seed"),
    "select-output-is-a-folder": (["select", "MODEL", "p", "--macs", "0.5", "-o", "folder"], "-o/--output 'folder' is a folder"),
}

BAD_OUTPUTS = {
    "calibrate-output-is-a-folder": (
        ["calibrate", "MODEL", "-o", "folder"],
        "-o/--output 'folder' is a folder; give a file path, e.g. 'folder/profile.safetensors'",
    ),
    "calibrate-plot-is-a-folder": (CALIBRATE + ["--plot", "folder"], "--plot 'folder' is a folder; give a file path"),
    "calibrate-parent-is-a-file": (
        ["calibrate", "MODEL", "-o", "a-file/sub/p.safetensors"],
        "a-file' is a file, not a folder; choose another path",
    ),
    "schedule-output-is-a-folder": (["schedule", "p.safetensors", "--macs", "0.5", "-o", "folder"], "-o/--output 'folder' is a folder"),
    "schedule-plot-parent-is-a-file": (
        SCHEDULE + ["--macs", "0.5", "--plot", "a-file/heat.png"],
        "--plot 'a-file/heat.png' cannot be written",
    ),
    "generate-output-is-a-file": (GENERATE + ["-o", "a-file"], "-o/--output 'a-file' is an existing file; give a folder"),
    "compare-output-is-a-file": (COMPARE + ["-o", "a-file"], "-o/--output 'a-file' is an existing file; give a folder"),
    "compare-output-under-a-file": (COMPARE + ["-o", "a-file/out"], "a-file' is a file, not a folder"),
}

BAD_SCHEDULES = {
    "corrupt-schedule": (["generate", "MODEL", "--schedule", "corrupt.json"], "is not valid JSON"),
    "steps-differ-from-the-schedule": (COMPARE + ["--steps", "6"], "the schedule has 4 steps but --steps is 6"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES) + list(BAD_OUTPUTS) + list(BAD_SCHEDULES))
def test_a_bad_argument_is_one_line_and_nothing_is_loaded(case, loaded, capsys):
    arguments, message = {**BAD_VALUES, **BAD_OUTPUTS, **BAD_SCHEDULES}[case]
    assert cli.main(arguments) == 2
    assert message in error_line(capsys)
    assert loaded == []


@pytest.mark.parametrize(
    "arguments",
    [
        ["calibrate", "MODEL", "-o", "new/sub/p.safetensors"],
        ["schedule", "p", "--alpha", "0", "-o", "new/s.json"],
        ["select", "MODEL", "p", "--macs", "0.5", "-o", "new/s.json"],
        GENERATE + ["-o", "new/out"],
    ],
    ids=["calibrate", "schedule", "select", "generate"],
)
def test_an_output_in_a_folder_without_write_permission_is_refused_first(arguments, loaded, capsys, monkeypatch):
    """os.access is asked (root may write anywhere, so the test answers for the operating system)."""
    real_access = os.access
    monkeypatch.setattr(cli.os, "access", lambda path, mode: Path(path) != Path.cwd() and real_access(path, mode))
    assert cli.main(arguments) == 2
    assert f"cannot be written: no write permission in {str(Path.cwd())!r}" in error_line(capsys)
    assert loaded == []
    assert not Path("new").exists()  # the check creates nothing


@pytest.mark.parametrize(
    "arguments",
    [
        CALIBRATE + ["--steps", "2", "--samples", "1", "--probes", "0", "--labels", "0", "--plot", "new/curves.png"],
        ["schedule", "p.safetensors", "--macs", "1", "-o", "new/s.json", "--plot", "heat.png"],
        GENERATE + ["--seed", "0", "-o", "folder"],
        COMPARE + ["--steps", "4", "-o", "new/folder"],
    ],
    ids=["calibrate", "schedule", "generate", "compare"],
)
def test_good_arguments_reach_the_loading(arguments, loaded, capsys):
    """The other side of the tests above: their commands would have loaded, so refusing earlier is the check's doing."""
    assert cli.main(arguments) == 1
    assert "was loaded" in error_line(capsys)
    assert loaded == [arguments[1]]
    assert not Path("new").exists()
