"""The step sensitivity in one pass: every calibration sample reuses all components at a step of its own.

Planning for another grid (:mod:`smoothcache_core.grid`) weighs each step by how much the final
sample moves per unit of component error there. Probing step by step
(:func:`~smoothcache_core.sensitivity.probe`) costs a generation per step; here the calibration's
``run()`` is called once more, and sample ``k`` of its batches reuses, at its probe step ``s_k``
only, every component's value of step ``s_k - 1`` (its rows of every output; the other samples
compute). Its final output against the calibration's uncached output of the same seeds is the
probe of step ``s_k``: one more pass of ``run()`` measures as many steps as it has samples. The
samples of a batch do not interact (attention and normalisation are per sample), so each row is the
generation that reuses at its own step alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .adapter import Component, GateFactory, ModelAdapter
from .engine import Attachment
from .errors import CalibrationError
from .gates import first_tensor
from .profile import ErrorProfile

#: How far (relative L1) the first component's first output may differ between the calibration
#: and the probe pass: both must generate the same samples from the same seeds.
REPRODUCTION_TOLERANCE = 1e-4


def generated_rows(value: Any, what: str = "run()") -> torch.Tensor:
    """The samples ``value`` holds, as one float64 CPU tensor (samples first): a tensor, an array,
    a pipeline output (its first tensor or array), or a list or tuple of those, one per generation."""
    if isinstance(value, (list, tuple)) and value and not hasattr(value, "_fields"):
        return torch.cat([generated_rows(part, what) for part in value])
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value).double()
    name = type(value).__name__
    if isinstance(value, Mapping):  # a diffusers pipeline output: its first tensor or array
        value = next((v for v in value.values() if isinstance(v, (torch.Tensor, np.ndarray))), None)
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value).double()
    tensor = value if isinstance(value, torch.Tensor) else first_tensor(value)
    if tensor is None or tensor.dim() == 0:
        raise CalibrationError(
            f"{what} returned {name}; measuring the step sensitivity compares generated samples, so it "
            "must return them (e.g. lambda: pipe(..., output_type='pt').images, or a list of those, one per generation), "
            "or pass sensitivity=False"
        )
    return tensor.detach().double().cpu()


def probe_steps(samples: int, steps: int) -> list[int]:
    """The step each of ``samples`` samples reuses at: the interior steps evenly, every one of them
    as often as the samples allow (the first and last steps always compute)."""
    interior = list(range(1, steps - 1))
    if not interior:
        raise CalibrationError(f"generations of {steps} steps have no step that can reuse; measuring the sensitivity needs at least 3")
    if samples <= len(interior):
        return np.round(np.linspace(1, steps - 2, samples)).astype(int).tolist()
    return [interior[k % len(interior)] for k in range(samples)]


def _row_index(leading: int, batch: int, samples: int, chosen: Sequence[int], device: torch.device) -> torch.Tensor | None:
    """Rows of a ``leading``-row output that belong to the ``chosen`` samples: the model's batch
    holds each sample ``batch / samples`` times (guidance branches, images per prompt), sample
    ``i % samples`` at row ``i``, and a component may fold other axes batch-outer into its rows."""
    if batch % samples or leading % batch:
        return None
    fold = leading // batch
    rows = [i * fold + f for i in range(batch) if i % samples in chosen for f in range(fold)]
    return torch.tensor(rows, dtype=torch.long, device=device)


class RowProbe(Attachment):
    """Gates that, at each sample's probe step, return the previous step's rows for that sample."""

    def __init__(
        self,
        model: nn.Module,
        adapter: ModelAdapter,
        components: Sequence[Component],
        samples: int,
        assigned: Sequence[int],
        on_evaluation: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(model, adapter, components)
        self._on_evaluation = on_evaluation
        self.samples = samples
        self.assigned = list(assigned)  # per sample of the whole run, its probe step
        self._held: list[dict[tuple[int, int], tuple[int, Any]]] = [{} for _ in self.components]
        self._reusing: list[int] = []  # samples of this generation that reuse at this step
        self._taking: list[int] = []  # samples that reuse at the next step: their rows are kept
        #: Per generation: the L1 norm of the first component's first output (the calibration's must match).
        self.opening_norms: list[float] = []

    def _observe(self, timestep: Any, batch: int | None) -> None:
        super()._observe(timestep, batch)
        if self._on_evaluation is not None:
            self._on_evaluation()
        generation, step = self._tracker.generations - 1, self._tracker.step
        mine = self.assigned[generation * self.samples : (generation + 1) * self.samples]
        self._reusing = [j for j, s in enumerate(mine) if s == step]
        self._taking = [j for j, s in enumerate(mine) if s == step + 1]

    def _rows(self, key: str, value: Any, chosen: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
        batch = self.batch or self.samples

        def index(tensor: torch.Tensor) -> torch.Tensor:
            rows = _row_index(tensor.shape[0] if tensor.dim() else 0, batch, self.samples, chosen, tensor.device)
            if rows is None:
                raise CalibrationError(
                    f"the rows of {key!r}'s output ({tuple(tensor.shape)}) do not split into the {self.samples} samples of a batch of "
                    f"{batch}, so its samples cannot reuse one at a time; calibrate with sensitivity=False"
                )
            return rows

        return index

    def _gate_factory(self, index: int) -> GateFactory:
        tracker, calls, key = self._tracker, self._calls, self.components[index].key
        held = self._held[index]

        def make_gate(original: Callable[..., Any]) -> Callable[..., Any]:
            def gate(*args: Any, **kwargs: Any) -> Any:
                output = original(*args, **kwargs)
                ordinal = calls[index]
                calls[index] = ordinal + 1
                step, slot = tracker.step, (tracker.branch, ordinal)
                if index == 0 and step == 0 and slot == (0, 0):
                    tensor = first_tensor(output)
                    self.opening_norms.append(float(tensor.detach().double().abs().sum()) if tensor is not None else 0.0)
                kept = held.pop(slot, None)
                if self._reusing and kept is not None and kept[0] == step - 1:
                    output = _with_rows(output, kept[1], self._rows(key, output, self._reusing), key)
                if self._taking:
                    rows = self._rows(key, output, self._taking)
                    held[slot] = (step, _map_tensors(output, lambda t: t.detach().index_select(0, rows(t)), key))
                return output

            return gate

        return make_gate

    def _release(self) -> None:
        for held in self._held:
            held.clear()


def _map_tensors(value: Any, function: Callable[[torch.Tensor], torch.Tensor], key: str) -> Any:
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_map_tensors(v, function, key) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, function, key) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, function, key) for k, v in value.items()}
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    raise CalibrationError(
        f"{key!r} returns a {type(value).__name__}, whose rows cannot be exchanged per sample; calibrate with sensitivity=False"
    )


def _with_rows(output: Any, kept: Any, rows: Callable[[torch.Tensor], torch.Tensor], key: str) -> Any:
    """``output`` with the kept rows (of the previous step) in place of its rows of the reusing samples."""
    flat: list[torch.Tensor] = []

    def collect(tensor: torch.Tensor) -> torch.Tensor:
        flat.append(tensor)
        return tensor

    _map_tensors(kept, collect, key)
    values = iter(flat)

    def put(tensor: torch.Tensor) -> torch.Tensor:
        earlier = next(values)
        mixed = tensor.clone()
        mixed.index_copy_(0, rows(tensor), earlier.to(mixed.dtype))
        return mixed

    return _map_tensors(output, put, key)


def probe_in_batch(
    model: nn.Module,
    adapter: ModelAdapter,
    components: Sequence[Component],
    profile: ErrorProfile,
    run: Callable[[], Any],
    references: torch.Tensor,
    opening_norms: Sequence[float],
    prepare: Callable[[Attachment], None] | None = None,
    on_evaluation: Callable[[], None] | None = None,
) -> ErrorProfile:
    """``profile`` with the probes of one more pass of ``run()`` (see the module doc): ``references``
    are the calibration's samples (every generation's, in order), ``opening_norms`` the L1 norms of
    its first component's first outputs, one per generation."""
    generations = len(opening_norms)
    if generations == 0 or len(references) % generations:
        raise CalibrationError(
            f"run() returned {len(references)} samples over {generations} generations; return every generation's samples "
            "(one tensor per call of the pipeline, or their concatenation) to measure the sensitivity"
        )
    samples = len(references) // generations
    assigned = probe_steps(len(references), profile.steps)
    probe = RowProbe(model, adapter, components, samples, assigned, on_evaluation)
    probe._install()
    try:
        if prepare is not None:
            prepare(probe)
        with torch.no_grad():
            outputs = generated_rows(run())
    finally:
        probe.unwrap()
    if outputs.shape != references.shape or len(probe.opening_norms) != generations:
        raise CalibrationError(
            f"the second pass of run() generated {tuple(outputs.shape)} in {len(probe.opening_norms)} generations, the first "
            f"{tuple(references.shape)} in {generations}: run() must generate the same samples each time it is called"
        )
    moved = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(probe.opening_norms, opening_norms, strict=True)]
    if max(moved) > REPRODUCTION_TOLERANCE:
        raise CalibrationError(
            "run() generated other samples the second time (its first model evaluation differs by "
            f"{max(moved):.1e}); seed every generation (generator=torch.Generator().manual_seed(...)) so that it repeats"
        )
    rows = references.shape[0]
    differences = (outputs - references).abs().reshape(rows, -1).sum(dim=1)
    finals = (differences / references.abs().reshape(rows, -1).sum(dim=1).clamp_min(1e-12)).numpy()
    sums, counts = np.zeros((1, profile.steps)), np.zeros((1, profile.steps), dtype=np.int64)
    for step, final in zip(assigned, finals, strict=True):
        sums[0, step] += final
        counts[0, step] += 1
    probed = profile.with_probes(torch.from_numpy(sums), torch.from_numpy(counts), "reuse")
    return replace(probed, metadata={**probed.metadata, "probe_kind": "in-batch"})
