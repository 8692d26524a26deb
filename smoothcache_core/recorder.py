"""Calibration: the inference gates with a recorder instead of a cache.

For every component, CFG branch and step ``i`` the recorder measures, per sample, the relative L1
change ``‖out_i − out_{i+l}‖₁ / ‖out_{i+l}‖₁`` for lags ``l = 1..k`` and accumulates sum, sum of
squares and count on the model's device (no host read per component; one check for non-finite
values at the end). The first model evaluation also runs under a flop counter, so the profile knows
what every component costs.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .adapter import Component, GateFactory, ModelAdapter
from .engine import Attachment, check_components, first_tensor, model_fingerprint
from .errors import CalibrationError
from .macs import flop_counter
from .profile import ErrorProfile

#: Smallest output norm used as a denominator (an all-zero output has zero error to itself).
_TINY = 1e-12


def per_sample(tensor: torch.Tensor, batch: int | None) -> torch.Tensor:
    """``tensor`` as (samples, features): grouped by the model's batch when the component folds
    other axes into its leading dimension batch-outer (Open-Sora's ``(B T) S C``), else by dim 0."""
    leading = tensor.shape[0] if tensor.dim() else 1
    rows = batch if batch and leading % batch == 0 else leading
    return tensor.reshape(rows, -1)


class Recorder(Attachment):
    """Records per-sample step-to-step errors of every component while ``run`` generates."""

    def __init__(self, model: nn.Module, adapter: ModelAdapter, components: Sequence[Component], lookahead: int) -> None:
        super().__init__(model, adapter, components)
        self.lookahead = lookahead
        count = len(self.components)
        self._history: list[dict[int, deque]] = [{} for _ in range(count)]
        self._capacity = 0
        self._sums: torch.Tensor | None = None
        self._sums_sq: torch.Tensor | None = None
        self._norms: torch.Tensor | None = None
        self._counts = np.zeros((count, lookahead, 0), dtype=np.int64)
        self._lengths: list[int] = []
        self._counter = None
        self._component_macs = [0] * count
        self._evaluation_macs = 0
        self._last_evaluation = [0] * count

    # -- tracking -------------------------------------------------------------------------------
    def _observe(self, timestep: float, batch: int | None) -> None:
        super()._observe(timestep, batch)
        evaluations = self._tracker.evaluations
        if evaluations == 2:
            self._stop_counting()
        if evaluations == 1:
            self._counter = flop_counter()
            self._counter.__enter__()

    def _stop_counting(self) -> None:
        if self._counter is not None:
            counter, self._counter = self._counter, None
            counter.__exit__(None, None, None)
            self._evaluation_macs = counter.get_total_flops() // 2

    def _on_new_generation(self, previous_steps: int) -> None:
        if previous_steps:
            self._lengths.append(previous_steps)
        for history in self._history:
            history.clear()

    # -- recording ------------------------------------------------------------------------------
    def _gate_factory(self, index: int) -> GateFactory:
        tracker = self._tracker
        key = self.components[index].key
        last_evaluation = self._last_evaluation

        def make_gate(original: Callable[..., Any]) -> Callable[..., Any]:
            def gate(*args: Any, **kwargs: Any) -> Any:
                counter = self._counter
                before = counter.get_total_flops() if counter is not None else 0
                output = original(*args, **kwargs)
                if counter is not None:
                    self._component_macs[index] = (counter.get_total_flops() - before) // 2
                step = tracker.step
                if step >= 0:
                    if last_evaluation[index] == tracker.evaluations:
                        raise CalibrationError(
                            f"component {key!r} ran twice in one model evaluation (feed-forward chunking or "
                            "a shared module?); calibration needs one call per evaluation"
                        )
                    last_evaluation[index] = tracker.evaluations
                    self._record(index, tracker.branch, step, output)
                return output

            return gate

        return make_gate

    def _ensure_capacity(self, step: int, device: torch.device) -> None:
        if self._sums is None:
            self._sums = torch.zeros(len(self.components), self.lookahead, 0, dtype=torch.float64, device=device)
            self._sums_sq = torch.zeros_like(self._sums)
            self._norms = torch.zeros(len(self.components), 0, dtype=torch.float64, device=device)
        if step < self._capacity:
            return
        grow = max(64, 2 * self._capacity, step + 1) - self._capacity
        self._sums = torch.nn.functional.pad(self._sums, (0, grow))
        self._sums_sq = torch.nn.functional.pad(self._sums_sq, (0, grow))
        self._norms = torch.nn.functional.pad(self._norms, (0, grow))
        self._counts = np.pad(self._counts, ((0, 0), (0, 0), (0, grow)))
        self._capacity += grow

    def _record(self, index: int, branch: int, step: int, output: Any) -> None:
        tensor = first_tensor(output)
        if tensor is None:
            return
        self._ensure_capacity(step, tensor.device)
        flat = per_sample(tensor.detach(), self.batch)
        current = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
        norms = current.abs().sum(dim=1)
        self._norms[index, step] += norms.sum()
        denominator = norms.clamp_min(_TINY)
        history = self._history[index].setdefault(branch, deque())
        for earlier_step, earlier, source, version in history:
            if version is not None and source._version != version:
                raise CalibrationError(
                    f"the model modified the output of {self.components[index].key!r} in place after it was "
                    "produced; its cached value would differ from what the model used"
                )
            lag = step - earlier_step
            if earlier.shape != flat.shape:  # the batch changed mid-generation (guidance switched off)
                continue
            earlier = earlier if earlier.dtype == current.dtype else earlier.to(current.dtype)
            errors = (earlier - current).abs().sum(dim=1) / denominator
            self._sums[index, lag - 1, earlier_step] += errors.sum()
            self._sums_sq[index, lag - 1, earlier_step] += errors.square().sum()
            self._counts[index, lag - 1, earlier_step] += errors.numel()
        version = None if tensor.is_inference() else tensor._version
        history.append((step, flat, tensor, version))
        while history and history[0][0] <= step - self.lookahead:
            history.popleft()

    # -- result ---------------------------------------------------------------------------------
    def finish(self, solver: str | None) -> ErrorProfile:
        """Detach and turn the accumulators into a profile (checks lengths and finiteness once)."""
        self._stop_counting()
        if self._tracker.generations:
            self._lengths.append(self._tracker.step + 1)
        self.unwrap()
        if not self._lengths or self._sums is None:
            raise CalibrationError(
                "run() performed no model evaluation; it must call the pipeline or model, e.g. lambda: pipe(...)"
            )
        if len(set(self._lengths)) > 1:
            raise CalibrationError(
                f"the calibration generations ran {self._lengths} model evaluations; a profile describes one "
                "number of steps: calibrate each step count separately"
            )
        steps = self._lengths[0]
        if steps < 2:
            raise CalibrationError("calibration needs generations of at least 2 steps")
        norms = self._norms[:, :steps].cpu()
        bad = (~torch.isfinite(norms)).nonzero()
        if len(bad):
            component, step = (int(v) for v in bad[bad[:, 1].argmin()])
            raise CalibrationError(
                f"component {self.components[component].key!r} produced NaN or inf at step {step}; fix the "
                "model or its inputs (dtype overflow?) before calibrating"
            )
        return ErrorProfile(
            components=tuple(c.spec for c in self.components),
            sums=self._sums[:, :, :steps].cpu(),
            sums_sq=self._sums_sq[:, :, :steps].cpu(),
            counts=torch.from_numpy(self._counts[:, :, :steps].copy()),
            macs=tuple(self._component_macs),
            evaluation_macs=self._evaluation_macs,
            metadata={
                "adapter": self.adapter.name,
                "model_class": type(self.model).__name__,
                "config_fingerprint": model_fingerprint(self.model),
                "solver": solver,
                "generations": len(self._lengths),
            },
        )

    def _release(self) -> None:
        self._stop_counting()
        for history in self._history:
            history.clear()


def record(model: nn.Module, adapter: ModelAdapter, run: Callable[[], Any], lookahead: int = 3, solver: str | None = None) -> ErrorProfile:
    """Attach a recorder, call ``run()``, detach (also on error or interrupt) and return the profile."""
    if not isinstance(lookahead, int) or isinstance(lookahead, bool) or lookahead < 1:
        raise CalibrationError(f"lookahead must be a positive integer, got {lookahead!r}")
    recorder = Recorder(model, adapter, check_components(model, adapter), lookahead)
    recorder._install()
    try:
        with torch.no_grad():
            run()
    except BaseException:  # interrupted or failed: leave the model as it was, write nothing
        recorder.unwrap()
        raise
    return recorder.finish(solver)
