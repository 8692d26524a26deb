"""Calibration: the inference gates with a recorder instead of a cache.

For every component, CFG branch and step ``i`` the recorder measures, per sample, the relative L1
change ``‖out_i − out_{i+l}‖₁ / ‖out_{i+l}‖₁`` for lags ``l = 1..k`` and accumulates sum, sum of
squares and count on the model's device (no host read per component; one check for non-finite
values at the end). The first model evaluation also runs under a flop counter, so the profile knows
what every component costs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .adapter import Component, GateFactory, ModelAdapter, unit_of
from .engine import Attachment, check_components, model_fingerprint
from .errors import CalibrationError
from .gates import first_tensor
from .group import ModelGroup
from .inbatch import generated_rows, probe_in_batch
from .macs import MacMeter
from .profile import ErrorProfile

#: Smallest output norm used as a denominator (an all-zero output has zero error to itself).
_TINY = 1e-12


def per_sample(tensor: torch.Tensor, batch: int | None) -> torch.Tensor:
    """``tensor`` as (samples, features): grouped by the model's batch when the component folds
    other axes into its leading dimension batch-outer (Open-Sora's ``(B T) S C``), else by dim 0."""
    leading = tensor.shape[0] if tensor.dim() else 1
    rows = batch if batch and leading % batch == 0 else leading
    return tensor.reshape(rows, -1)


def parallel_group(model: nn.Module) -> Any:
    """The process group of the context parallelism active on ``model`` (diffusers'
    ``enable_parallelism``: its sequence is split over the group's ranks), or None. Read by duck
    typing: the engine imports no diffusers."""
    members = model.members.values() if isinstance(model, ModelGroup) else (model,)
    for member in members:
        config = getattr(getattr(member, "_parallel_config", None), "context_parallel_config", None)
        mesh = getattr(config, "_flattened_mesh", None)
        if mesh is not None:
            return mesh.get_group()
    return None


class Recorder(Attachment):
    """Records per-sample step-to-step errors of every component while ``run`` generates."""

    def __init__(
        self,
        model: nn.Module,
        adapter: ModelAdapter,
        components: Sequence[Component],
        lookahead: int,
        on_evaluation: Callable[[], None] | None = None,
        opening_norms: bool = False,
    ) -> None:
        super().__init__(model, adapter, components)
        self.lookahead = lookahead
        #: Per generation, the L1 norm of the first component's first output (one host read each),
        #: if asked for: a second pass of ``run()`` proves it repeats the samples by matching them.
        self.opening_norms: list[float] | None = [] if opening_norms else None
        #: The context-parallel group the model's sequence is split over, if any (see :func:`parallel_group`).
        self._group = parallel_group(model)
        self._on_evaluation = on_evaluation
        count = len(self.components)
        #: Per component and (branch, call ordinal): the last ``k`` (step, per-sample view, output, version).
        self._history: list[dict[tuple[int, int], deque]] = [{} for _ in range(count)]
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._capacity = 0
        self._moments: torch.Tensor | None = None  # [sum, sum of squares] x components x lags x steps
        self._norms: torch.Tensor | None = None
        self._counts = np.zeros((count, lookahead, 0), dtype=np.int64)
        self._lengths: list[int] = []
        self._step_timesteps: list[float | None] = []  # the first generation's, per step
        self._meter = MacMeter()
        self._component_macs = [0] * count
        self._evaluation_macs = 0

    # -- tracking -------------------------------------------------------------------------------
    def _observe(self, timestep: Any, batch: int | None) -> None:
        super()._observe(timestep, batch)
        tracker = self._tracker
        if not self._lengths and tracker.branch == 0 and tracker.step == len(self._step_timesteps):
            self._step_timesteps.append(tracker.timestep)
        if self._on_evaluation is not None:
            self._on_evaluation()
        evaluations = self._tracker.evaluations
        if evaluations == 2:
            self._stop_counting()
        if evaluations == 1:
            self._meter.start()

    def _stop_counting(self) -> None:
        if self._meter.active:
            self._evaluation_macs = self._meter.stop()

    def _on_new_generation(self, previous_steps: int) -> None:
        if previous_steps:
            self._lengths.append(previous_steps)
        for history in self._history:
            history.clear()

    def new_generation(self) -> None:
        """A pipeline call starts: the generation before it (if any) ends with the steps it ran."""
        if self._tracker.step >= 0:
            self._lengths.append(self._tracker.step + 1)
        super().new_generation()
        self._buffers.clear()

    # -- recording ------------------------------------------------------------------------------
    def _measured(self, index: int, original: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """Call ``original``; during the first evaluation its MACs add to component ``index``'s."""
        if not self._meter.active:
            return original(*args, **kwargs)
        output, macs = self._meter.run(lambda: original(*args, **kwargs))
        self._component_macs[index] += macs
        return output

    def _gate_factory(self, index: int) -> GateFactory:
        """Record every call; a component called several times per evaluation (one module for two
        streams, chunks) is compared call by call, each call ordinal like a branch of its own."""
        tracker, calls = self._tracker, self._calls

        def make_gate(original: Callable[..., Any]) -> Callable[..., Any]:
            def gate(*args: Any, **kwargs: Any) -> Any:
                output = self._measured(index, original, args, kwargs)
                ordinal = calls[index]
                calls[index] = ordinal + 1
                if tracker.step >= 0:
                    self._record(index, (tracker.branch, ordinal), tracker.step, output)
                if self.opening_norms is not None and index == 0 and tracker.step == 0 and (tracker.branch, ordinal) == (0, 0):
                    tensor = first_tensor(output)
                    self.opening_norms.append(float(tensor.detach().double().abs().sum()) if tensor is not None else 0.0)
                return output

            return gate

        return make_gate

    def _follower_gate_factory(self, index: int, follower: int) -> GateFactory:
        """Followers run as they are; their MACs belong to the component they feed."""
        return lambda original: lambda *args, **kwargs: self._measured(index, original, args, kwargs)

    def _accumulators(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The moments and norms accumulators, created on the outputs' device and grown to hold ``step``."""
        if self._moments is None or self._norms is None:
            self._moments = torch.zeros(2, len(self.components), self.lookahead, 0, dtype=torch.float64, device=device)
            self._norms = torch.zeros(len(self.components), 0, dtype=torch.float64, device=device)
        if step >= self._capacity:
            grow = max(64, 2 * self._capacity, step + 1) - self._capacity
            self._moments = torch.nn.functional.pad(self._moments, (0, grow))
            self._norms = torch.nn.functional.pad(self._norms, (0, grow))
            self._counts = np.pad(self._counts, ((0, 0), (0, 0), (0, grow)))
            self._capacity += grow
        return self._moments, self._norms

    def _record(self, index: int, slot: tuple[int, int], step: int, output: Any) -> None:
        """Errors of this output against the last ``k`` outputs of the same component and branch.

        The last ``k`` outputs are held by reference (no copy; an in-place edit of one by the model
        is detected through the tensor's version counter), norms and differences go into a reused
        buffer, and the pairs (lag l, earlier step ``step - l``) lie on a diagonal of the
        (lag, step) accumulator, so both moments of all lags are added with one strided add.
        """
        tensor = first_tensor(output)
        if tensor is None:
            return
        moments, norms_by_step = self._accumulators(step, tensor.device)
        current = per_sample(tensor.detach(), self.batch)
        if current.dtype not in (torch.float32, torch.float64):
            current = current.float()
        scratch = self._scratch(current)
        norms = torch.abs(current, out=scratch).sum(dim=1)
        history = self._history[index].setdefault(slot, deque())
        differences: list[torch.Tensor] = []
        for earlier_step, earlier, source, version in reversed(history):
            if step - earlier_step != len(differences) + 1 or earlier.shape != current.shape:
                break  # a missing step, or the batch changed (guidance switched off): no more pairs
            if version is not None and source._version != version:
                raise CalibrationError(
                    f"the model modified the output of {self.components[index].key!r} in place after it was "
                    "produced; calibration would measure a value the model did not use"
                )
            torch.sub(earlier, current, out=scratch)
            differences.append(scratch.abs_().sum(dim=1))
        if self._group is not None:
            norms, differences = self._summed_over_group(norms, differences)
        norms_by_step[index, step] += norms.sum()
        if differences:
            lags = len(differences)
            errors = torch.stack(differences) / norms.clamp_min(_TINY)
            diagonal = moments.view(2, len(self.components), -1)[:, index, step - 1 :: self._capacity - 1]
            diagonal[:, :lags] += torch.stack((errors.sum(dim=1), errors.square().sum(dim=1)))
            for lag in range(1, lags + 1):
                self._counts[index, lag - 1, step - lag] += norms.numel()
        version = None if tensor.is_inference() else tensor._version
        history.append((step, current, tensor, version))
        if len(history) > self.lookahead:
            history.popleft()

    def _summed_over_group(self, norms: torch.Tensor, differences: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Norms and differences summed over the context-parallel group: each rank holds a shard of
        every sample's tokens, so the sums of all ranks are those of one process on the full
        sequence (one collective of a fixed shape per call, the same on every rank)."""
        import torch.distributed as dist

        packed = torch.zeros(1 + self.lookahead, len(norms), dtype=torch.float64, device=norms.device)
        packed[0] = norms
        for lag, difference in enumerate(differences, start=1):
            packed[lag] = difference
        dist.all_reduce(packed, group=self._group)
        return packed[0], list(packed[1 : 1 + len(differences)])

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A reusable buffer per shape for norms and differences: recording allocates nothing per call."""
        key = (like.shape, like.dtype, like.device)
        if key not in self._buffers:
            self._buffers[key] = torch.empty_like(like)
        return self._buffers[key]

    # -- result ---------------------------------------------------------------------------------
    def finish(self, solver: str | None) -> ErrorProfile:
        """Detach and turn the accumulators into a profile (checks lengths and finiteness once)."""
        self._stop_counting()
        if self._tracker.generations:
            self._lengths.append(self._tracker.step + 1)
        self.unwrap()
        if not self._lengths or self._moments is None or self._norms is None:
            raise CalibrationError("run() performed no model evaluation; it must call the pipeline or model, e.g. lambda: pipe(...)")
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
        timesteps = self._step_timesteps[:steps]
        return ErrorProfile(
            timesteps=torch.tensor(timesteps, dtype=torch.float64) if len(timesteps) == steps and None not in timesteps else None,
            components=tuple(c.spec for c in self.components),
            sums=self._moments[0, :, :, :steps].cpu(),
            sums_sq=self._moments[1, :, :, :steps].cpu(),
            counts=torch.from_numpy(self._counts[:, :, :steps].copy()),
            macs=tuple(self._component_macs),
            evaluation_macs=self._evaluation_macs,
            metadata={
                "adapter": self.adapter.name,
                "unit": unit_of(self.adapter),
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


def record(
    model: nn.Module,
    adapter: ModelAdapter,
    run: Callable[[], Any],
    lookahead: int = 3,
    solver: str | None = None,
    on_evaluation: Callable[[], None] | None = None,
    prepare: Callable[[Attachment], None] | None = None,
    sensitivity: bool = False,
    scheduler: Any = None,
) -> ErrorProfile:
    """Attach a recorder, call ``run()``, detach (also on error or interrupt) and return the profile.

    ``on_evaluation`` is called at the start of every model evaluation (e.g. to advance a progress
    bar); ``prepare`` gets the attached recorder first (e.g. to watch a pipeline's scheduler).
    ``scheduler``: the one that ran the generations, whose noise table places the steps on the
    noise schedule (:meth:`ErrorProfile.with_scheduler`). ``sensitivity=True`` calls ``run()`` a
    second time to measure every step's sensitivity in one pass (:mod:`smoothcache_core.inbatch`):
    ``run()`` must then return its samples and repeat them (seeded).
    """
    if not isinstance(sensitivity, bool):
        raise CalibrationError(f"sensitivity must be True or False, got {sensitivity!r:.40}")
    if not isinstance(lookahead, int) or isinstance(lookahead, bool) or lookahead < 1:
        raise CalibrationError(f"lookahead must be a positive integer, got {lookahead!r}")
    recorder = Recorder(model, adapter, check_components(model, adapter), lookahead, on_evaluation, opening_norms=sensitivity)
    recorder._install()
    try:
        if prepare is not None:
            prepare(recorder)
        with torch.no_grad():
            result = run()
    except BaseException:  # interrupted or failed: leave the model as it was, write nothing
        recorder.unwrap()
        raise
    profile = recorder.finish(solver).with_scheduler(scheduler)
    if not sensitivity:
        return profile
    references = generated_rows(result)
    return probe_in_batch(
        model, adapter, recorder.components, profile, run, references, recorder.opening_norms or [], prepare, on_evaluation
    )
