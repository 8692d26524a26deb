"""Shared fixtures: real diffusers models and pipelines built tiny, offline, with seeded weights."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from smoothcache.reference import pipelines

REFERENCE_SCHEDULES = Path(__file__).parent / "data" / "reference-schedules"


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def saved_pipeline(tmp_path_factory, name: str, build) -> Path:
    """A pipeline saved with save_pretrained into its own folder (the real loading path starts here)."""
    folder = tmp_path_factory.mktemp(name)
    build().save_pretrained(folder)
    return folder


def load_pipeline(folder: Path):
    """``DiffusionPipeline.from_pretrained`` of a local folder, quiet, without progress bars."""
    from diffusers import DiffusionPipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def dit_pipeline_dir(tmp_path_factory) -> Path:
    return saved_pipeline(tmp_path_factory, "dit-pipeline", lambda: pipelines.dit_pipeline("tiny", seed=0))


@pytest.fixture
def dit_pipe(dit_pipeline_dir):
    return load_pipeline(dit_pipeline_dir)


@pytest.fixture(scope="session")
def audio_pipeline_dir(tmp_path_factory) -> Path:
    return saved_pipeline(tmp_path_factory, "stable-audio-pipeline", lambda: pipelines.stable_audio_pipeline("tiny", seed=0))


@pytest.fixture
def audio_pipe(audio_pipeline_dir):
    return load_pipeline(audio_pipeline_dir)
