"""The model zoo: every transformer class diffusers exports, built tiny, with one evaluation's inputs.

Each :class:`ZooCase` says how to build one class from a tiny config with seeded random weights and
what one model evaluation receives, or why smoothcache cannot serve it. The zoo test runs every case
through a short denoising loop; the support matrix is written from that test's results. The numbers
(tiny configs, input shapes) follow diffusers' own model tests; the code is ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import torch

#: Builds the forward's keyword arguments, except the timestep, from a seeded generator.
Inputs = Callable[[torch.Generator], dict[str, Any]]
#: Builds the timestep argument from the scalar timestep ``t`` (in the model's range) and the inputs.
MakeTimestep = Callable[[float, dict[str, Any]], Any]
#: The next value of the latent argument from the current one and the model's first output.
Update = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ZooCase:
    """One diffusers transformer class (or one configuration of it), built tiny.

    ``cls``: the class name exported by ``diffusers``. ``variant``: a short name when a class has
    several cases (``"ti2v"`` for Wan 2.2's per-token timesteps). ``family``: the name users know
    (``"FLUX.1"``, ``"Wan 2.1 / 2.2"``). ``modality``: ``image``, ``video``, ``audio`` or ``other``.
    ``config``: the tiny ``__init__`` keyword arguments. ``inputs``: the forward's other keyword
    arguments. ``latent``: the argument a denoising loop updates. ``timestep``: the timestep
    argument's name; ``timestep_range``: its value at pure noise (1000.0, or 1.0 for [0, 1]).
    ``make_timestep``: how the argument is built from the scalar ``t`` (default: a float tensor of
    shape ``[batch]``). ``update``: the next latent from the current one and the first output
    (default: ``latent - 0.1 * output`` on the latent's shape). ``reason``: why smoothcache cannot
    serve this class (not a step denoiser, no timestep, does not run on CPU); then the rest may be
    empty.
    """

    cls: str
    family: str
    modality: str
    config: Mapping[str, Any] = field(default_factory=dict)
    inputs: Inputs | None = None
    variant: str = ""
    latent: str = "hidden_states"
    timestep: str = "timestep"
    timestep_range: float = 1000.0
    make_timestep: MakeTimestep | None = None
    update: Update | None = None
    reason: str | None = None

    @property
    def name(self) -> str:
        """``cls`` or ``cls[variant]``: the test's id."""
        return f"{self.cls}[{self.variant}]" if self.variant else self.cls


#: The modules holding the cases, each a ``CASES`` list.
CASE_MODULES = ("cases_image1", "cases_image2", "cases_video1", "cases_video2")


def all_cases() -> list[ZooCase]:
    """Every case of the zoo, image first, then video and audio."""
    import importlib

    return [case for module in CASE_MODULES for case in importlib.import_module(f"{__name__}.{module}").CASES]


def build(case: ZooCase, seed: int = 0) -> torch.nn.Module:
    """The case's model from its tiny config, seeded, every all-zero parameter randomised, in eval mode.

    Zero-initialised gates and output layers would make a cached and an uncached block agree
    trivially; random values make reuse visible in the output.
    """
    import diffusers

    from smoothcache.reference.pipelines import randomize_zero_parameters

    torch.manual_seed(seed)
    empty = torch.empty
    # some classes leave parameters as torch.empty (set only by from_pretrained): start them at zero,
    # so that they are randomised below like the other zero-initialised ones, not left as old memory
    with mock.patch("torch.empty", lambda *args, **kwargs: empty(*args, **kwargs).zero_()):
        model = getattr(diffusers, case.cls)(**case.config)
    randomize_zero_parameters(model, seed)
    return model.eval()


def default_timestep(t: float, inputs: dict[str, Any], latent: str = "hidden_states") -> torch.Tensor:
    """A float tensor of shape ``[batch]`` holding ``t``."""
    return torch.full((inputs[latent].shape[0],), float(t))


def first_output(output: Any) -> torch.Tensor:
    """The denoiser's prediction from whatever the forward returned (tuple, output dataclass, tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return first_output(output[0])
    for name in ("sample", "noise_pred", "hidden_states"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot find the prediction in a {type(output).__name__}")


def default_update(latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """``latent - 0.1 * prediction``, the prediction cut to the latent's channels (learned sigma)."""
    if prediction.shape != latent.shape and prediction.dim() == latent.dim():
        prediction = prediction[:, : latent.shape[1]]
    return latent - 0.1 * prediction.reshape(latent.shape)


def timesteps(case: ZooCase, steps: int) -> list[float]:
    """``steps`` decreasing timesteps from pure noise towards (not reaching) zero, in the model's range."""
    return [case.timestep_range * (1.0 - 0.9 * i / max(steps - 1, 1)) for i in range(steps)]


def denoise(model: torch.nn.Module, case: ZooCase, steps: int, seed: int = 0) -> torch.Tensor:
    """A short denoising loop: ``steps`` evaluations at decreasing timesteps, the latent updated from
    each prediction; returns the final latent. Inputs are drawn once from ``seed``."""
    if case.inputs is None:
        raise ValueError(f"{case.name} has no inputs: {case.reason}")
    inputs = case.inputs(torch.Generator().manual_seed(seed))
    make_timestep = case.make_timestep or (lambda t, kw: default_timestep(t, kw, case.latent))
    update = case.update or default_update
    with torch.no_grad():
        for t in timesteps(case, steps):
            prediction = first_output(model(**inputs, **{case.timestep: make_timestep(t, inputs)}))
            inputs[case.latent] = update(inputs[case.latent], prediction)
    return inputs[case.latent]
