"""The command line, run as a user runs it: subprocesses on a tiny pipeline saved to a local folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from smoothcache import ErrorProfile, Schedule
from smoothcache.cli import EXAMPLES, main

PNG = b"\x89PNG\r\n\x1a\n"


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smoothcache", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def journey(tmp_path_factory, dit_pipeline_dir):
    """calibrate -> schedule -> generate -> compare, each a separate process, as in the README."""
    folder = tmp_path_factory.mktemp("journey")
    model = str(dit_pipeline_dir)
    results = {
        "calibrate": run(
            "calibrate",
            model,
            "--steps",
            "8",
            "--samples",
            "2",
            "--scheduler",
            "ddim",
            "--probes",
            "3",
            "--run-lengths",
            "2",
            "--fill",
            "linear",
            "-o",
            str(folder / "p.safetensors"),
            "--plot",
            str(folder / "curves.png"),
        ),
        "schedule": run(
            "schedule",
            str(folder / "p.safetensors"),
            "--speedup",
            "1.4",
            "--weighting",
            "sensitivity",
            "-o",
            str(folder / "s.json"),
            "--plot",
            str(folder / "heat.png"),
        ),
        "runs": run("schedule", str(folder / "p.safetensors"), "--macs", "0.7", "--method", "runs", "-o", str(folder / "r.json")),
    }
    results["select"] = run(
        "select",
        model,
        str(folder / "p.safetensors"),
        "--macs",
        "0.6",
        "--scheduler",
        "ddim",
        "--seed",
        "5",
        "-o",
        str(folder / "sel.json"),
    )
    results["generate"] = run("generate", model, "--schedule", str(folder / "s.json"), "--samples", "2", "-o", str(folder / "generated"))
    # one calibration (with its sensitivity pass), then other step counts and samplers
    results["calibrate-any"] = run(
        "calibrate", model, "--steps", "8", "--samples", "2", "--scheduler", "ddim", "-o", str(folder / "q.safetensors")
    )
    results["schedule-steps"] = run(
        "schedule", str(folder / "q.safetensors"), "--macs", "0.6", "--steps", "12", "--scheduler", "dpm", "-o", str(folder / "q12.json")
    )
    results["generate-profile"] = run(
        "generate",
        model,
        "--profile",
        str(folder / "q.safetensors"),
        "--macs",
        "0.6",
        "--steps",
        "6",
        "--samples",
        "1",
        "-o",
        str(folder / "any"),
    )
    results["compare"] = run("compare", model, "--schedule", str(folder / "s.json"), "--samples", "1", "-o", str(folder / "compared"))
    return folder, results


@pytest.mark.parametrize(
    "command", ["calibrate", "schedule", "runs", "select", "generate", "compare", "calibrate-any", "schedule-steps", "generate-profile"]
)
def test_journey_commands_succeed(journey, command):
    _, results = journey
    assert results[command].returncode == 0, results[command].stderr
    assert "Traceback" not in results[command].stderr


def test_journey_outputs_load_back(journey):
    folder, results = journey
    profile = ErrorProfile.load(folder / "p.safetensors")
    assert profile.steps == 8 and profile.metadata["solver"] == "DDIMScheduler" and profile.metadata["generations"] == 2
    # 3 probes spread over steps 1..6, runs of 2 where they end before the last step
    assert profile.probe_counts.tolist() == [[0, 1, 0, 0, 1, 0, 1, 0], [0, 1, 0, 0, 1, 0, 0, 0]]
    assert "probed 5 runs of up to 2 steps" in results["calibrate"].stdout
    runs = Schedule.load(folder / "r.json")
    assert runs.provenance["method"] == "runs" and abs(runs.provenance["mac_fraction"] - 0.7) <= 0.07  # 8 steps: one ~ 0.12
    assert len({tuple(table) for table in runs.tables.values()}) == 1 and "probed-runs weighting, linear fill" in results["runs"].stdout
    assert profile.probe_fill == "linear" and runs.fill == "linear" and Schedule.load(folder / "s.json").fill == "reuse"
    selected = Schedule.load(folder / "sel.json")
    assert selected.provenance["selected"] in selected.provenance["selected_from"] and "uniform" in selected.provenance["selected_from"]
    assert selected.fill == "linear" and f"{selected.provenance['selected']} (relative L1 to uncached on seed 5" in results["select"].stdout
    schedule = Schedule.load(folder / "s.json")
    assert schedule.provenance["weighting"] == "sensitivity" and "sensitivity weighting" in results["schedule"].stdout
    assert abs(schedule.provenance["mac_fraction"] - 1 / 1.4) <= 0.07 and schedule.steps == 8  # the closest to 1.4x
    assert "ideal speedup" in results["schedule"].stdout and "MAC fraction" in results["schedule"].stdout
    for image in (
        folder / "curves.png",
        folder / "heat.png",
        folder / "compared" / "compare.png",
        folder / "generated" / "sample-1000-0.png",
    ):
        assert image.read_bytes()[:8] == PNG, image
    stats = json.loads((folder / "generated" / "stats.json").read_text())
    assert stats["reused"] == 2 * 2 * sum(table.count(0) for table in schedule.tables.values())  # 2 samples x 2 layers
    comparison = json.loads((folder / "compared" / "compare.json").read_text())
    assert comparison["mac_fraction"] == pytest.approx(schedule.provenance["mac_fraction"], rel=1e-6)
    assert comparison["time_ratio"] > 0 and 0 < comparison["ssim"] <= 1 and comparison["psnr_db"] > 0


def test_journey_plans_other_step_counts_from_one_calibration(journey):
    folder, results = journey
    profile = ErrorProfile.load(folder / "q.safetensors")
    assert profile.metadata["probe_kind"] == "in-batch" and profile.probe_counts.sum() == 2  # one sample each
    assert profile.metadata["scheduler_class"] == "DDIMScheduler" and "plans for any steps" in results["calibrate-any"].stdout
    planned = Schedule.load(folder / "q12.json")
    assert planned.steps == 12 and planned.provenance["method"] == "runs" and planned.provenance["solver"] == "DDIMScheduler"
    assert len(planned.provenance["timesteps"]) == 12 and abs(planned.provenance["mac_fraction"] - 0.6) < 0.06
    shown = run("inspect", str(folder / "q.safetensors"))
    assert shown.returncode == 0 and "plans for: any grid" in shown.stdout and "measured in one pass" in shown.stdout
    stats = json.loads((folder / "any" / "stats.json").read_text())
    assert stats["evaluations"] == 6 and stats["reused"] > 0 and stats["planned_grids"] == 1


def test_adapters_and_inspect(dit_pipeline_dir):
    listed = run("adapters")
    assert listed.returncode == 0 and "dit" in listed.stdout and "built-in" in listed.stdout
    inspected = run("inspect", str(dit_pipeline_dir))
    assert inspected.returncode == 0, inspected.stderr
    assert "adapter: dit" in inspected.stdout and "attn1" in inspected.stdout and "share of evaluation" in inspected.stdout


def test_inspect_a_workload_factory_and_audio_compare(tmp_path, audio_pipeline_dir):
    inspected = run("inspect", "smoothcache.reference.workloads:stdit3_tiny")
    assert inspected.returncode == 0, inspected.stderr
    assert "spatial.attn" in inspected.stdout and "temporal.mlp" in inspected.stdout
    blocks = run("inspect", "smoothcache.reference.workloads:stdit3_tiny", "--unit", "block")
    assert blocks.returncode == 0, blocks.stderr
    assert "unit: block   components: 4" in blocks.stdout  # two spatial and two temporal blocks, one residual each
    assert "spatial_blocks.block" in blocks.stdout and "temporal_blocks.block" in blocks.stdout and "attn" not in blocks.stdout
    schedule = Schedule({"attn1": [1, 0, 1, 1], "attn2": [1, 1, 0, 1], "ff": [1, 0, 1, 1]})
    schedule.save(tmp_path / "s.json")
    compared = run("compare", str(audio_pipeline_dir), "--schedule", str(tmp_path / "s.json"), "--samples", "1", "-o", str(tmp_path))
    assert compared.returncode == 0, compared.stderr
    result = json.loads((tmp_path / "compare.json").read_text())
    assert {"lsd_db", "snr_db"} <= set(result) and (tmp_path / "compare.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("command", list(EXAMPLES))
def test_every_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["inspect", "./no-such-folder"], "MODEL './no-such-folder' does not exist"),
        (["inspect", "no_such_package.module:factory"], "cannot import 'no_such_package.module'"),
        (["schedule", "missing.safetensors", "--alpha", "0.1", "-o", "s.json"], "cannot read profile 'missing.safetensors'"),
        (["calibrate", "DIT", "--scheduler", "bogus", "-o", "p.safetensors"], "unknown scheduler 'bogus'"),
        (["calibrate", "DIT", "--adapter", "nope", "-o", "p.safetensors"], "unknown adapter 'nope'"),
        (["generate", "DIT", "--schedule", "corrupt.json"], "is not valid JSON"),
        (["generate", "DIT", "--schedule", "four.json", "--steps", "6"], "the schedule has 4 steps but --steps is 6"),
        (["calibrate", "smoothcache.reference.pipelines:dit_transformer", "-o", "p.safetensors"], "is a bare model"),
    ],
)
def test_errors_are_one_line_with_exit_code(arguments, message, dit_pipeline_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.json").write_text("{")
    Schedule({"attn1": [1, 0, 1, 1]}).save(tmp_path / "four.json")
    arguments = [str(dit_pipeline_dir) if a == "DIT" else a for a in arguments]
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0], error


def test_an_error_in_a_subprocess_prints_no_traceback(tmp_path):
    result = run("schedule", str(tmp_path / "missing.safetensors"), "--alpha", "0.1", "-o", str(tmp_path / "s.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: cannot read profile")


def test_compare_measures_fidelity_of_identical_outputs(tmp_path, dit_pipeline_dir):
    """An all-compute schedule compares as identical: infinite PSNR, SSIM 1."""
    Schedule({"attn1": [1] * 4, "ff": [1] * 4}).save(tmp_path / "all.json")
    assert main(["compare", str(dit_pipeline_dir), "--schedule", str(tmp_path / "all.json"), "--samples", "1", "-o", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["psnr_db"] == float("inf") and result["ssim"] == pytest.approx(1.0) and result["mac_fraction"] == 1.0
