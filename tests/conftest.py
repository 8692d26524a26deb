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


@pytest.fixture(scope="session")
def dit_pipeline_dir(tmp_path_factory) -> Path:
    """A tiny DiTPipeline saved with save_pretrained, to be loaded with from_pretrained."""
    folder = tmp_path_factory.mktemp("dit-pipeline")
    pipelines.dit_pipeline("tiny", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture
def dit_pipe(dit_pipeline_dir):
    from diffusers import DiTPipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = DiTPipeline.from_pretrained(dit_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe
