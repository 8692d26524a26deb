"""Fills: what a skipped step returns when the schedule says more than "reuse the last value".

A fill of order ``n`` evaluates, at the skipped step, the polynomial through the last ``n`` computed
values of a component (the line for two, the parabola for three). Its weights are the Lagrange
basis polynomials at that step, so the fill is ``sum(w * v)`` over the computed values, oldest first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

#: The weights of a fill's computed values, oldest first.
Weights = tuple[float, ...]

#: Dtypes whose partial sums are accumulated in float32: a fill's intermediate values can leave
#: their range where the result does not (the parabola through -40000, 40000, 40000 in float16).
_NARROW = (torch.float16, torch.bfloat16)


def lagrange_weights(points: Sequence[float], at: float) -> Weights:
    """The weights, at ``at``, of the polynomial through values known at ``points`` (distinct)."""
    return tuple(math.prod((at - other) / (point - other) for other in points if other != point) for point in points)


def extrapolate(values: Sequence[Any], weights: Weights, into: Any = None) -> Any:
    """The polynomial fill: ``sum(w * v)`` over the computed ``values`` (oldest first) for every
    tensor of an output (tuples and lists element by element; anything else, or outputs that do not
    line up, is the last value as it is). Written into the tensors of ``into`` (an earlier result)
    where they fit, so a skipped step allocates nothing."""
    last = values[-1]
    if isinstance(last, torch.Tensor):
        if not last.is_floating_point() or any(not isinstance(v, torch.Tensor) or v.shape != last.shape for v in values):
            return last
        recording = torch.is_grad_enabled() and any(v.requires_grad for v in values)
        out = into if _fits(into, last) and not recording else None  # out= cannot record a graph
        if len(values) > 2 and last.dtype in _NARROW:
            wide = _weighted_mean([v.float() for v in values], weights, None)
            return out.copy_(wide) if out is not None else wide.to(last.dtype)
        return _weighted_mean(values, weights, out)
    if isinstance(last, (tuple, list)) and all(isinstance(v, (tuple, list)) and len(v) == len(last) for v in values):
        intos = into if isinstance(into, (tuple, list)) and len(into) == len(last) else (None,) * len(last)
        return type(last)(extrapolate(parts, weights, part_into) for *parts, part_into in zip(*values, intos, strict=True))
    return last


def _weighted_mean(values: Sequence[torch.Tensor], weights: Weights, out: torch.Tensor | None) -> torch.Tensor:
    """``sum(w * v)`` as nested lerps (one fused pass each, the line being one): after k values the
    result is their weighted mean, and the next lerp moves it toward value k+1 by that value's share
    of the weight so far. The partial sums are never 0 for a fill (the last weight is not 1)."""
    result, total = values[0], weights[0]
    for value, weight in zip(values[1:], weights[1:], strict=True):
        total += weight
        share = weight / total
        result = torch.lerp(result, value, share, out=out) if out is not None else torch.lerp(result, value, share)
    return result


def _fits(buffer: Any, like: torch.Tensor) -> bool:
    """Whether ``buffer`` can receive a result shaped like ``like`` in place."""
    return (
        isinstance(buffer, torch.Tensor)
        and buffer.shape == like.shape
        and buffer.dtype == like.dtype
        and buffer.device == like.device
        and buffer.is_inference() == torch.is_inference_mode_enabled()
    )
