"""The noise schedule: where a model evaluation sits, and what a reuse costs there, on any grid.

A calibration measures, per component, how much its output changes between two evaluations; those
changes are functions of the two noise levels, not of step indices (a DDIM-50 calibration predicts
the errors of DDIM-20, DPM-Solver++, UniPC and Euler grids of the same model within a few percent).
Noise levels are measured as ``u = log(noise-to-signal ratio)`` (``-log SNR / 2``): ``log sigma``
of variance-preserving (DDPM) models, ``log(sigma / (1 - sigma))`` of flow-matching ones, ``log
sigma`` of EDM ones. Where no scheduler tells it, the model's timestep itself is the coordinate.

:class:`NoiseMap` maps the timesteps the model receives to ``u``; :class:`ErrorSurface` turns one
calibrated error curve into the error of reusing a value from any level at any other;
:class:`Sensitivity` says how much the final sample moves per unit of component error, per level.
Everything here is numpy and takes milliseconds: a plan for a new grid needs no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: What ``u`` is: the log noise-to-signal ratio, or (without a scheduler) the model's timestep.
COORDINATES = ("log-noise", "timestep")


@dataclass(frozen=True)
class NoiseMap:
    """``u`` of any timestep in the model's units: a monotone table, interpolated linearly between
    its points and extended linearly past its ends."""

    timesteps: np.ndarray  # model-unit timesteps, increasing
    levels: np.ndarray  # u at each
    coordinate: str = "log-noise"
    #: The model's timestep per unit of the scheduler's (pipelines pass it as is, FLUX's divides by 1000).
    scale: float = 1.0

    def __post_init__(self) -> None:
        order = np.argsort(self.timesteps)
        timesteps, levels = np.asarray(self.timesteps, dtype=np.float64)[order], np.asarray(self.levels, dtype=np.float64)[order]
        keep = np.concatenate(([True], np.diff(timesteps) > 0)) & np.isfinite(levels)
        object.__setattr__(self, "timesteps", timesteps[keep])
        object.__setattr__(self, "levels", levels[keep])

    def __call__(self, timesteps: Sequence[float] | np.ndarray) -> np.ndarray:
        t = np.asarray(timesteps, dtype=np.float64)
        x, y = self.timesteps, self.levels
        if len(x) < 2:
            return np.full(t.shape, y[0] if len(y) else 0.0)
        inside = np.interp(t, x, y)
        below = y[0] + (t - x[0]) * (y[1] - y[0]) / (x[1] - x[0])
        above = y[-1] + (t - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])
        return np.where(t < x[0], below, np.where(t > x[-1], above, inside))

    @classmethod
    def identity(cls, timesteps: Sequence[float] | np.ndarray) -> NoiseMap:
        """The timestep as its own coordinate (no scheduler told the noise levels)."""
        points = np.unique(np.asarray(timesteps, dtype=np.float64))
        return cls(points, points.copy(), "timestep")


def _logit(fraction: np.ndarray) -> np.ndarray:
    clipped = np.clip(fraction, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


def scheduler_noise(scheduler: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(timesteps, u)`` of a diffusers scheduler, in the scheduler's own timestep units, read by
    duck typing (nothing here imports diffusers): the training noise table of a DDPM-type scheduler
    (``alphas_cumprod``), the ``sigma = t / num_train_timesteps`` of a flow-matching one, else the
    ``sigmas`` its last ``set_timesteps`` paired with its ``timesteps``. None where none applies."""
    name = type(scheduler).__name__
    config = getattr(scheduler, "config", None)
    trained = getattr(config, "num_train_timesteps", None) if config is not None else None
    if "FlowMatch" in name and trained:
        t = np.linspace(0.0, float(trained), 4097)[1:-1]
        return t, _logit(t / float(trained))
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is not None and len(alphas) > 1 and "Cosine" not in name:
        abar = np.asarray(alphas, dtype=np.float64)
        return np.arange(len(abar), dtype=np.float64), 0.5 * np.log(np.clip(1 - abar, 1e-20, None) / np.clip(abar, 1e-20, None))
    sigmas, timesteps = getattr(scheduler, "sigmas", None), getattr(scheduler, "timesteps", None)
    if sigmas is None or timesteps is None:
        return None
    s, t = np.asarray(sigmas, dtype=np.float64).reshape(-1), np.asarray(timesteps, dtype=np.float64).reshape(-1)
    if len(s) < len(t) or len(t) < 2:
        return None
    s = s[: len(t)]
    keep = s > 0
    return (t[keep], np.log(s[keep])) if keep.sum() >= 2 else None


def noise_map(scheduler: Any, model_timesteps: Sequence[float] | np.ndarray, scheduler_timesteps: Sequence[float] | np.ndarray) -> NoiseMap:
    """The map from the model's timesteps to ``u``, from the scheduler that ran a generation whose
    evaluations got ``model_timesteps`` while it stepped through ``scheduler_timesteps`` (pipelines
    pass the scheduler's timestep, or a multiple of it: FLUX divides by 1000). Without a scheduler's
    noise table, or where the two timesteps are not proportional, the model's timestep is ``u``."""
    table = scheduler_noise(scheduler) if scheduler is not None else None
    model, own = np.asarray(model_timesteps, dtype=np.float64), np.asarray(scheduler_timesteps, dtype=np.float64)
    if table is None or len(model) != len(own) or len(model) < 2 or not np.any(own):
        return NoiseMap.identity(model)
    scale = float(np.dot(model, own) / np.dot(own, own))
    if scale <= 0 or not np.allclose(model, scale * own, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(model).max()))):
        return NoiseMap.identity(model)
    return NoiseMap(table[0] * scale, table[1], scale=scale)


def step_sizes(levels: np.ndarray) -> np.ndarray:
    """How far in ``u`` the solver step that consumes each evaluation moves: ``u[j] - u[j+1]``; the
    last one moves as far as the one before it (no later level is known), and repeated levels (a
    second-order solver's two evaluations) share their step."""
    u = np.asarray(levels, dtype=np.float64)
    if len(u) < 2:
        return np.ones(len(u))
    nexts = np.empty_like(u)
    for j in range(len(u)):
        k = j + 1
        while k < len(u) and u[k] == u[j]:
            k += 1
        nexts[j] = u[k] if k < len(u) else np.nan
    sizes = np.abs(u - nexts)
    last = np.flatnonzero(np.isfinite(sizes))
    sizes[~np.isfinite(sizes)] = sizes[last[-1]] if len(last) else 1.0
    repeated = np.concatenate((u[1:] == u[:-1], [False])) | np.concatenate(([False], u[1:] == u[:-1]))
    return np.where(repeated, sizes / 2, sizes)


class ErrorSurface:
    """``E(a -> b)``, the relative error of reusing at level ``b`` a value computed at level ``a``,
    from one calibrated curve ``rows[lag - 1, i]`` measured at levels ``levels[i]``.

    Per calibrated evaluation, ``log E`` is piecewise linear in ``log |b - a|`` through the measured
    lags (the end segments extended); between calibrated evaluations it is interpolated linearly in
    ``a``. Below two measured lags at a level, that level is left out."""

    def __init__(self, rows: np.ndarray, levels: np.ndarray) -> None:
        lags, steps = rows.shape
        starts, knots = [], []
        for i in range(steps - 1):
            distances, errors = [], []
            for lag in range(1, lags + 1):
                if i + lag < steps and np.isfinite(rows[lag - 1, i]) and rows[lag - 1, i] > 0 and levels[i + lag] != levels[i]:
                    distances.append(np.log(abs(levels[i + lag] - levels[i])))
                    errors.append(np.log(rows[lag - 1, i]))
            if len(distances) >= 2:
                order = np.argsort(distances)
                starts.append(float(levels[i]))
                knots.append((np.asarray(distances)[order], np.asarray(errors)[order]))
        order = np.argsort(starts)
        self.starts = np.asarray(starts, dtype=np.float64)[order]
        self.knots = [knots[i] for i in order]
        #: The longest calibrated distance, per calibrated level: beyond it an error is extrapolated.
        self.reach = np.array([np.exp(k[0][-1]) for k in self.knots]) if self.knots else np.zeros(0)

    @property
    def empty(self) -> bool:
        return not self.knots

    def _log_error(self, knot: int, distance: float) -> float:
        xs, ys = self.knots[knot]
        if distance <= xs[0]:
            return float(ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (distance - xs[0]))
        if distance >= xs[-1]:
            return float(ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (distance - xs[-1]))
        return float(np.interp(distance, xs, ys))

    def error(self, a: float, b: float) -> float:
        """``E(a -> b)``; 0 where the levels are equal."""
        if self.empty:
            return float("nan")
        if a == b:
            return 0.0
        distance = np.log(abs(b - a))
        j = int(np.searchsorted(self.starts, a))
        if j <= 0:
            return float(np.exp(self._log_error(0, distance)))
        if j >= len(self.starts):
            return float(np.exp(self._log_error(len(self.starts) - 1, distance)))
        weight = (a - self.starts[j - 1]) / (self.starts[j] - self.starts[j - 1])
        return float(np.exp((1 - weight) * self._log_error(j - 1, distance) + weight * self._log_error(j, distance)))

    def rows(self, levels: np.ndarray, lags: int) -> np.ndarray:
        """The curve ``rows[lag - 1, j] = E(levels[j] -> levels[j + lag])`` of another grid."""
        steps = len(levels)
        out = np.full((lags, steps), np.nan)
        for lag in range(1, lags + 1):
            for j in range(steps - lag):
                out[lag - 1, j] = self.error(float(levels[j]), float(levels[j + lag]))
        return out


#: Degree of the polynomial of ``log S`` in ``u``: the sensitivity varies smoothly, ~6x over a schedule.
SENSITIVITY_DEGREE = 3


@dataclass(frozen=True)
class Sensitivity:
    """How much the final sample moves per unit of component error reused at level ``u``, per unit of
    ``u`` the solver step covers: ``W(j) = S(u_j) * |u_j - u_(j+1)|`` is a step's weight on any grid.

    ``S`` is ``exp`` of a polynomial in ``u``, fitted on probes (each reusing every component at one
    step), held constant past the probed levels."""

    coefficients: tuple[float, ...]
    low: float
    high: float

    @classmethod
    def fit(cls, levels: np.ndarray, weights: np.ndarray) -> Sensitivity | None:
        """From probed steps' levels and weights (final error per unit of component error, per unit
        of step size): a robust fit (two passes, points past 2.5 deviations dropped). None below
        ``SENSITIVITY_DEGREE + 2`` probed steps."""
        keep = np.isfinite(levels) & np.isfinite(weights) & (weights > 0)
        x, y = np.asarray(levels, dtype=np.float64)[keep], np.log(np.asarray(weights, dtype=np.float64)[keep])
        if len(x) < SENSITIVITY_DEGREE + 2:
            return None
        inliers = np.ones(len(x), dtype=bool)
        for _ in range(2):
            coefficients = np.polyfit(x[inliers], y[inliers], SENSITIVITY_DEGREE)
            residual = y - np.polyval(coefficients, x)
            spread = np.median(np.abs(residual[inliers] - np.median(residual[inliers]))) * 1.4826 + 1e-9
            inliers = np.abs(residual - np.median(residual[inliers])) < 2.5 * spread
        return cls(tuple(float(c) for c in coefficients), float(x.min()), float(x.max()))

    def weights(self, levels: np.ndarray) -> np.ndarray:
        """Every evaluation's weight on a grid of levels (mean 1 is not imposed: costs are compared within a grid)."""
        u = np.asarray(levels, dtype=np.float64)
        return np.exp(np.polyval(np.asarray(self.coefficients), np.clip(u, self.low, self.high))) * step_sizes(u)


def solver_steps(timesteps: Sequence[float]) -> list[list[int]]:
    """The evaluations of each solver step, from the timesteps alone: a second-order solver (Heun,
    KDPM2) evaluates the first timestep once, then every later one twice (the end of one step and the
    start of the next), so its steps are evaluations ``(0, 1), (2, 3), ...``; any other grid has one
    evaluation a step."""
    t = list(timesteps)
    repeated = len(t) >= 3 and len(t) % 2 == 1 and all(t[i] == t[i + 1] for i in range(1, len(t) - 1, 2))
    if not repeated:
        return [[i] for i in range(len(t))]
    return [[i, i + 1] if i + 1 < len(t) else [i] for i in range(0, len(t), 2)]
