"""Workloads: a denoiser and how to generate with it, so the CLI can calibrate, generate and compare.

A diffusers pipeline becomes a workload automatically (class-conditional DiT, and text-to-image,
-video and -audio pipelines that take ``prompt``); research code returns a :class:`Workload` from a
``package.module:factory`` entry (see ``smoothcache.reference.workloads``).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothcache_core import SmoothCacheError

#: ``--scheduler`` names and the diffusers scheduler classes they select.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "cosine-dpm": "CosineDPMSolverMultistepScheduler",
}


class WorkloadError(SmoothCacheError, ValueError):
    """The model cannot be loaded or run as asked."""


@dataclass
class Workload:
    """What the CLI needs: the model to wrap and ``generate(seed, steps)``.

    ``generate`` returns images ``[B, C, H, W]``, video ``[B, C, T, H, W]`` or audio
    ``[B, channels, samples]``. ``data_range`` is the value range of images and video (1.0 for [0, 1];
    None: take it from the uncached output, e.g. for latents). ``set_solver`` (optional) switches the
    sampler by ``--scheduler`` name.
    """

    model: nn.Module
    generate: Callable[[int, int], torch.Tensor]
    modality: str
    default_steps: int = 50
    solver: str | None = None
    sample_rate: int | None = None
    data_range: float | None = 1.0
    description: str = ""
    set_solver: Callable[[str], str] | None = field(default=None, repr=False)
    #: The diffusers pipeline behind it, if any (moved to ``--device`` by the CLI).
    pipeline: Any = field(default=None, repr=False)
    #: For a model without a pipeline: its sampler set to a number of steps. Calibration reads its
    #: noise table, and a profile's plan for that many steps is made for its timesteps.
    scheduler: Callable[[int], Any] | None = field(default=None, repr=False)

    def timesteps(self, steps: int) -> list[float] | None:
        """The timesteps of ``steps`` steps of the current sampler (None where nothing tells them)."""
        solver = self.scheduler(steps) if self.scheduler is not None else None
        return None if solver is None else [float(t) for t in solver.timesteps]

    @property
    def target(self) -> Any:
        """What to wrap, calibrate and probe: the pipeline when there is one (its calls start
        generations, and a two-expert pipeline's experts share one schedule), else the model."""
        return self.model if self.pipeline is None else self.pipeline


def _pipeline_solver_switch(pipe: Any) -> Callable[[str], str]:
    def set_solver(name: str) -> str:
        if name not in SCHEDULERS:
            raise WorkloadError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
        import diffusers

        pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(pipe.scheduler.config)
        return SCHEDULERS[name]

    return set_solver


#: A transformer with fewer parameters than this is a test or demo model: it is run at a small size,
#: not at its pipeline's default (up to 1280x720 pixels and 129 frames, minutes per step on a CPU).
SMALL_MODEL_PARAMETERS = 50_000_000
#: The side, in pixels, of a small model's images and frames (rounded up to what the pipeline needs).
SMALL_SIDE = 32
#: Prompts when the user gives none, by modality.
DEFAULT_PROMPTS = {
    "image": "a photograph of an astronaut riding a horse",
    "video": "a cat walking on the grass",
    "audio": "a dog barking in the rain",
}


def _modality(parameters: Mapping[str, inspect.Parameter]) -> str:
    """What a pipeline generates, from what its ``__call__`` accepts: audio pipelines take a number of
    waveforms per prompt, video pipelines a number of frames."""
    if "num_waveforms_per_prompt" in parameters:
        return "audio"
    return "video" if "num_frames" in parameters else "image"


def _small_side(pipe: Any) -> int:
    """:data:`SMALL_SIDE` rounded up to a multiple of the pixels per latent pixel (the image or video
    processor's factor, which includes 2x2 packing where the pipeline packs) times the transformer's
    spatial patch, so that no pipeline resizes or rejects it."""
    processor = getattr(pipe, "video_processor", None) or getattr(pipe, "image_processor", None)
    factor = int(getattr(getattr(processor, "config", None), "vae_scale_factor", 8))
    patch = pipe.transformer.config.get("patch_size", 1) or 1
    multiple = factor * int(patch[-1] if isinstance(patch, (tuple, list)) else patch)
    return -(-SMALL_SIDE // multiple) * multiple


def _small_frames(pipe: Any) -> int:
    """Two latent frames after the first: ``2 * k + 1`` frames for a VAE that compresses time by ``k``."""
    factor = getattr(pipe, "vae_scale_factor_temporal", None) or getattr(pipe, "vae_temporal_compression_ratio", None)
    return 2 * int(factor or 4) + 1


def _call_kwargs(pipe: Any, parameters: Mapping[str, inspect.Parameter], modality: str) -> dict[str, Any]:
    """Keyword arguments for every generation besides prompt, steps and generator: tensors out; an
    empty negative prompt where true classifier-free guidance is on by default but runs only with a
    negative prompt (Qwen-Image); a small size for a small model (images and video)."""
    kwargs: dict[str, Any] = {}
    if "output_type" in parameters:
        kwargs["output_type"] = "pt"
    true_cfg = getattr(parameters.get("true_cfg_scale"), "default", None)
    if isinstance(true_cfg, (int, float)) and true_cfg > 1 and "negative_prompt" in parameters:
        kwargs["negative_prompt"] = " "
    small = sum(p.numel() for p in pipe.transformer.parameters()) < SMALL_MODEL_PARAMETERS
    if small and modality != "audio" and {"height", "width"} <= parameters.keys():
        kwargs["height"] = kwargs["width"] = _small_side(pipe)
        if modality == "video":
            kwargs["num_frames"] = _small_frames(pipe)
    return kwargs


def _output_tensor(output: Any, modality: str) -> torch.Tensor:
    """The generated tensor in the workload's layout; video pipelines return frames first
    ``[B, T, C, H, W]``, the workload has ``[B, C, T, H, W]``."""
    if modality == "video":
        return torch.as_tensor(output.frames).permute(0, 2, 1, 3, 4)
    return torch.as_tensor(output.audios if modality == "audio" else output.images)


def from_pipeline(pipe: Any, prompt: str | None = None, labels: list[int] | None = None) -> Workload:
    """A workload for a diffusers pipeline: DiT (class labels), or one that takes ``prompt`` and makes
    images, video or audio (Flux, SD3, Wan 2.1 / 2.2, LTX-Video, Qwen-Image, Stable Audio 1 and 3, ...).

    What to pass is read from the pipeline's ``__call__`` signature (see :func:`_call_kwargs`); the
    pipeline's own defaults apply otherwise, its default step count included. A two-expert Wan 2.2
    pipeline's workload model is the :class:`~smoothcache.ModelGroup` of both experts.
    """
    from smoothcache import _as_model

    transformer = getattr(pipe, "transformer", None)
    if not isinstance(transformer, nn.Module):
        raise WorkloadError(f"{type(pipe).__name__} has no transformer; smoothcache accelerates DiT pipelines")
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    kind = type(pipe).__name__
    parameters = inspect.signature(pipe.__call__).parameters
    steps_default = getattr(parameters.get("num_inference_steps"), "default", None)
    default_steps = steps_default if isinstance(steps_default, int) else 50

    if kind == "DiTPipeline":
        classes = labels or [0]

        def generate(seed: int, steps: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(seed)
            return pipe(class_labels=classes, num_inference_steps=steps, generator=generator, output_type="pt").images

        modality, rate = "image", None
    else:
        modality = _modality(parameters)
        text = prompt or DEFAULT_PROMPTS[modality]
        kwargs = _call_kwargs(pipe, parameters, modality)

        def generate(seed: int, steps: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(seed)
            return _output_tensor(pipe(prompt=text, num_inference_steps=steps, generator=generator, **kwargs), modality)

        sampling_rate = getattr(getattr(pipe, "vae", None), "config", {}).get("sampling_rate") if modality == "audio" else None
        rate = int(sampling_rate) if sampling_rate else None
    return Workload(
        _as_model(pipe),
        generate,
        modality,
        default_steps=default_steps,
        solver=type(pipe.scheduler).__name__,
        sample_rate=rate,
        description=kind,
        set_solver=_pipeline_solver_switch(pipe),
        pipeline=pipe,
    )


def _load_entry(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise WorkloadError(f"cannot import {module_name!r} for MODEL {spec!r}: {error}") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise WorkloadError(f"{module_name!r} has no callable {attribute!r} (MODEL {spec!r})")
    return factory()


def load(model: str, prompt: str | None = None, labels: list[int] | None = None) -> Workload | nn.Module:
    """Resolve the CLI's MODEL: ``package.module:factory``, a local pipeline folder, or a hub id.

    A factory may return a Workload, a pipeline or a bare model (which can be inspected only).
    """
    if ":" in model and not os.path.exists(model):
        loaded = _load_entry(model)
    else:
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
        try:
            from transformers.utils import logging as transformers_logging
        except ImportError:  # a pipeline without text encoders (DiT) needs no transformers
            pass
        else:
            transformers_logging.disable_progress_bar()  # its text encoders' "Loading weights" bars
        path = Path(model).expanduser()
        if model.startswith((".", "/", "~")) and not path.exists():  # a path, not an "org/name" hub id
            raise WorkloadError(f"MODEL {model!r} does not exist; pass a pipeline folder, package.module:factory or a hub id")
        if path.exists() and not (path / "model_index.json").exists():
            raise WorkloadError(f"{model!r} is a folder without model_index.json; pass a diffusers pipeline folder")
        try:
            loaded = DiffusionPipeline.from_pretrained(path if path.exists() else model)
        except Exception as error:  # diffusers raises many types; the user needs one line
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WorkloadError(f"cannot load MODEL {model!r} ({first}); pass a local pipeline folder or package.module:factory") from error
    if isinstance(loaded, Workload) or (isinstance(loaded, nn.Module) and not hasattr(loaded, "transformer")):
        return loaded
    return from_pipeline(loaded, prompt=prompt, labels=labels)
