"""Test-only shims that let diffusers 0.42's context parallelism run on a CPU-only torch with gloo.

Never imported by the library. Each shim is the smallest change that gets one named failure out of
the way (only where the original would raise), and :func:`uninstall` undoes them all:

``cpu_device_count``
    ``ModelMixin._resolve_parallel_config`` (diffusers/models/modeling_utils.py:1719) computes
    ``torch.device(device_type, rank % torch.accelerator.device_count())``; a CPU-only torch has no
    accelerator, so ``device_count()`` is 0 and ``enable_parallelism`` raises ``ZeroDivisionError``.
    The shim makes ``torch.accelerator.device_count()`` answer 1 where it would answer 0 (so every
    rank gets ``cpu:0``; the device is only recorded on the config, nothing is moved to it).
    cache-dit computes the same thing with ``torch.get_device_module("cpu").device_count()``,
    which is already 1 on CPU: it needs no shim.

``native_attention_lse``
    Ring attention (``TemplatedRingAttention.forward``, diffusers/models/attention_dispatch.py:2386)
    calls the backend's forward op with ``return_lse=True`` to merge the partial results of the
    key/value chunks; the only context-parallel backend that runs on CPU is ``native``, whose op
    (``_native_attention_forward_op``, attention_dispatch.py:860) raises "Native attention does not
    support return_lse=True". The shim replaces that module-level function (``_native_attention``
    looks it up by name at every call) with one that, only when ``return_lse=True``, computes the
    softmax attention and its log-sum-exp explicitly in float32 (``out`` as ``[B, S, H, D]``, ``lse`` as
    ``[B, S, H]``, the layout the ring merge expects); with ``return_lse=False`` (Ulysses) it calls the
    original op unchanged.

``cachedit_native_lse``
    cache-dit's ring attention (``cache_dit/distributed/core/_templated_ring.py:52``) asks its own
    ``native`` op (``cache_dit/attention/backends/native.py:13``) for the log-sum-exp, which it gets
    from ``torch.ops.aten._scaled_dot_product_flash_attention``, a CUDA-only kernel ("Could not run
    ... with arguments from the 'CPU' backend"). The shim replaces that module-level function
    (looked up by name at each call, and checked by ``__name__`` against an allow-list in
    ``register.py:304``, so the replacement keeps the name) with one that computes the same
    ``(out, lse)`` explicitly, ``lse`` as ``[B, S, H, 1]``; a mask with ``return_lse`` is refused as before
    (cache-dit's own error), everything else calls the original.

``cachedit_ring_torch_merge``
    cache-dit's ring then merges the partial outputs with ``cache_dit.kernels.fused_merge_attn_states``,
    which resolves a Triton or CuteDSL kernel and raises "kernel backend: KernelBackend.TRITON is not
    supported now!" on CPU (``cache_dit/kernels/ops.py:65``). ``_templated_ring.py:5-9`` already has a
    pure-torch merge for when that import fails (``fused_merge_attn_states = None``); the shim sets that
    module global to ``None``, so cache-dit takes its own fallback.
"""

from __future__ import annotations

import math
from typing import Any

import torch

_SAVED: dict[str, Any] = {}


def _device_count_at_least_one(original: Any) -> Any:
    def device_count() -> int:
        return max(int(original()), 1)

    return device_count


def _lse_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None, scale: float | None
) -> tuple:
    """Softmax attention of ``[B, S, H, D]`` inputs with its log-sum-exp, in float32."""
    q, k, v = (x.permute(0, 2, 1, 3).float() for x in (query, key, value))
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else 1.0 / math.sqrt(q.shape[-1]))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask.float()
    lse = torch.logsumexp(scores, dim=-1)  # [B, H, S]
    out = torch.softmax(scores, dim=-1) @ v
    return out.permute(0, 2, 1, 3).to(query.dtype), lse.permute(0, 2, 1).contiguous()


def _forward_op_with_lse(original: Any) -> Any:
    def forward_op(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any = None, dropout_p: float = 0.0,
                   is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False, return_lse: bool = False,
                   _save_ctx: bool = True, _parallel_config: Any = None) -> Any:  # fmt: skip
        if not return_lse:
            return original(ctx, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, False, _save_ctx, _parallel_config)
        if dropout_p or is_causal or enable_gqa:
            raise NotImplementedError("the test shim's log-sum-exp attention has no dropout, causal mask or GQA")
        return _lse_attention(query, key, value, attn_mask, scale)

    return forward_op


def _cachedit_forward_op_with_lse(original: Any) -> Any:
    def _native_attention_forward_op(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any = None,
                                     dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
                                     return_lse: bool = False, _save_ctx: bool = True, _cp_config: Any = None) -> Any:  # fmt: skip
        if not return_lse or attn_mask is not None or dropout_p or is_causal or enable_gqa:
            return original(ctx, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, return_lse, _save_ctx, _cp_config)
        out, lse = _lse_attention(query, key, value, None, scale)
        return out, lse.unsqueeze(-1)

    return _native_attention_forward_op


def install(cache_dit: bool = True) -> None:
    """Install the shims (idempotent); ``cache_dit=False`` leaves cache-dit alone (or when it is not installed)."""
    if _SAVED:
        return
    from diffusers.models import attention_dispatch

    _SAVED["device_count"] = torch.accelerator.device_count
    _SAVED["forward_op"] = attention_dispatch._native_attention_forward_op
    torch.accelerator.device_count = _device_count_at_least_one(_SAVED["device_count"])
    attention_dispatch._native_attention_forward_op = _forward_op_with_lse(_SAVED["forward_op"])
    if cache_dit:
        try:
            from cache_dit.attention.backends import native
        except ImportError:
            return
        from cache_dit.distributed.core import _templated_ring

        _SAVED["cachedit_forward_op"] = native._native_attention_forward_op
        _SAVED["cachedit_merge"] = _templated_ring.fused_merge_attn_states
        native._native_attention_forward_op = _cachedit_forward_op_with_lse(_SAVED["cachedit_forward_op"])
        _templated_ring.fused_merge_attn_states = None


def uninstall() -> None:
    """Undo :func:`install`."""
    if not _SAVED:
        return
    from diffusers.models import attention_dispatch

    torch.accelerator.device_count = _SAVED.pop("device_count")
    attention_dispatch._native_attention_forward_op = _SAVED.pop("forward_op")
    if "cachedit_forward_op" in _SAVED:
        from cache_dit.attention.backends import native
        from cache_dit.distributed.core import _templated_ring

        native._native_attention_forward_op = _SAVED.pop("cachedit_forward_op")
        _templated_ring.fused_merge_attn_states = _SAVED.pop("cachedit_merge")
