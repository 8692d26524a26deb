"""Open-Sora v1.2 ``STDiT3`` re-implemented with plain torch + einops.

Mirrors ``opensora/models/stdit/stdit3.py`` and the layers it uses from
``opensora/models/layers/blocks.py`` (tag ``v1.2.0``).  Attribute names follow
the original so that a released state dict (e.g. ``hpcai-tech/OpenSora-STDiT-v3``)
loads with ``load_state_dict(strict=True)``.  xformers / flash-attn are replaced
by :func:`torch.nn.functional.scaled_dot_product_attention`; sequence
parallelism, gradient checkpointing, fused LayerNorm kernels and DropPath
(training-only, ``drop_path=0`` in every released config) are left out.

Residual stream of one :class:`STDiT3Block` (``x``: ``[B, T*S, C]``; ``t`` is the
model's ``t_block`` output reshaped to six ``[B, 1, C]`` chunks added to
``scale_shift_table``)::

    x = x + gate_msa * R(block.attn(R(t2i_modulate(block.norm1(x), shift_msa, scale_msa))))
    x = x + block.cross_attn(x, y, mask)                          # no gate, no norm
    x = x + gate_mlp * block.mlp(t2i_modulate(block.norm2(x), shift_mlp, scale_mlp))

``R`` is the einops reshape to ``(B T) S C`` for spatial blocks (attention over
the S patches of one frame) or ``(B S) T C`` for temporal blocks (attention over
the T frames of one patch, with RoPE), and back.  So the value entering the
residual stream is the output of the module call ``block.attn(...)`` (times
``gate_msa``), ``block.cross_attn(...)`` (ungated) and ``block.mlp(...)`` (times
``gate_mlp``).

When ``x_mask`` (``[B, T]`` bool) is given, each block also builds a second set of
modulation parameters from ``t0`` (the embedding of timestep 0, used for
conditioning frames).  Frames with ``x_mask`` False use the ``t0`` shift/scale
for the modulated input *and* the ``t0`` gate; the sub-module itself is still
called once on the frame-wise mixed input.  Model order: for each depth index
``i`` run ``spatial_blocks[i]`` then ``temporal_blocks[i]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from .dit import TimestepEmbedder as DiTTimestepEmbedder

Lens = Sequence[int] | torch.Tensor


def approx_gelu() -> nn.Module:
    """tanh-approximated GELU, the activation every STDiT3 MLP uses."""
    return nn.GELU(approximate="tanh")


def t2i_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """PixArt-style adaLN modulation."""
    return x * (1 + scale) + shift


def t_mask_select(x_mask: torch.Tensor, x: torch.Tensor, masked_x: torch.Tensor, T: int, S: int) -> torch.Tensor:
    """Pick ``x`` for frames where ``x_mask`` is True, ``masked_x`` elsewhere (both ``[B, T*S, C]``)."""
    x = rearrange(x, "B (T S) C -> B T S C", T=T, S=S)
    masked_x = rearrange(masked_x, "B (T S) C -> B T S C", T=T, S=S)
    x = torch.where(x_mask[:, :, None, None], x, masked_x)
    return rearrange(x, "B T S C -> B (T S) C")


class LlamaRMSNorm(nn.Module):
    """RMSNorm computed in float32, as used for the q/k norms."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        h = hidden_states.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(input_dtype)


class Mlp(nn.Module):
    """timm ``Mlp`` without dropout/norm (all disabled in STDiT3): ``fc2(act(fc1(x)))``."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = approx_gelu,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class RotaryEmbedding(nn.Module):
    """The part of ``rotary_embedding_torch.RotaryEmbedding`` (0.5.3, ``freqs_for='lang'``) STDiT3 uses.

    ``freqs`` is a frozen parameter in the original, so it is part of the state dict
    (``rope.freqs``) and follows ``model.to(dtype)``; angles are computed in its dtype.
    """

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Interleaved rotation angles ``[..., dim]`` (each frequency repeated twice)."""
        angles = positions.to(self.freqs.dtype)[..., None] * self.freqs
        return repeat(angles, "... n -> ... (n r)", r=2)

    def rotate_queries_or_keys(self, t: torch.Tensor) -> torch.Tensor:
        """Rotate ``t`` (``[..., seq, dim]``) by its position along dim -2 (interleaved pairs)."""
        positions = torch.arange(t.shape[-2], device=t.device, dtype=t.dtype)
        angles = self.forward(positions)
        pairs = rearrange(t, "... (d r) -> ... d r", r=2)
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1)
        rotated = rearrange(rotated, "... d r -> ... (d r)")
        return t * angles.cos() + rotated * angles.sin()


class PatchEmbed3D(nn.Module):
    """Conv3d patchifier; pads T/H/W up to a multiple of the patch size first."""

    def __init__(self, patch_size: Sequence[int] = (2, 4, 4), in_chans: int = 3, embed_dim: int = 96) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, D, H, W = x.shape
        pt, ph, pw = self.patch_size
        x = F.pad(x, (0, (-W) % pw, 0, (-H) % ph, 0, (-D) % pt))
        x = self.proj(x)
        return rearrange(x, "B C T H W -> B (T H W) C")


class Attention(nn.Module):
    """Self-attention with optional per-head RMS q/k norm and optional RoPE (temporal blocks)."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        norm_layer: Callable[[int], nn.Module] = LlamaRMSNorm,
        rope: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        assert dim % num_heads == 0, "dim should be divisible by num_heads"
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = norm_layer(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = norm_layer(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        # ``rotary_emb`` is a bound method of the model-level ``rope`` module, so it adds no state.
        self.rope = rope is not None
        if rope is not None:
            self.rotary_emb = rope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "B N (K H D) -> K B H N D", K=3, H=self.num_heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope:
            q, k = self.rotary_emb(q), self.rotary_emb(k)
        x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(rearrange(x, "B H N D -> B N (H D)"))


class MultiHeadCrossAttention(nn.Module):
    """Cross-attention from video tokens to packed, variable-length caption tokens.

    ``cond`` holds the captions of the whole batch packed into one sequence
    (``[1, sum(lens), C]``) and ``mask`` their lengths.  The original feeds xformers a
    ``BlockDiagonalMask.from_seqlens([N] * B, lens)``: batch item ``b`` attends only to
    its own ``lens[b]`` tokens.  Here the packed keys are unpacked to a padded batch and
    the padding is masked out, which is the same attention.  With ``mask=None`` every
    query attends to every packed token (the original's behaviour without a bias).
    """

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        assert d_model % num_heads == 0, "d_model must be divisible by num_heads"
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.q_linear = nn.Linear(d_model, d_model)
        self.kv_linear = nn.Linear(d_model, d_model * 2)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: Lens | None = None) -> torch.Tensor:
        B, _N, _C = x.shape
        k, v = rearrange(self.kv_linear(cond), "... (K H D) -> K (...) H D", K=2, H=self.num_heads)
        if mask is None:
            q = rearrange(self.q_linear(x), "B N (H D) -> 1 H (B N) D", H=self.num_heads)
            k, v = (rearrange(t, "M H D -> 1 H M D") for t in (k, v))
            out = F.scaled_dot_product_attention(q, k, v)
            return self.proj(rearrange(out, "1 H (B N) D -> B N (H D)", B=B))

        lens = mask.tolist() if isinstance(mask, torch.Tensor) else [int(n) for n in mask]
        q = rearrange(self.q_linear(x), "B N (H D) -> B H N D", H=self.num_heads)
        max_len = max(lens)
        if all(n == max_len for n in lens):
            k, v = (rearrange(t, "(B L) H D -> B H L D", B=B) for t in (k, v))
            attn_mask = None
        else:
            k, v = (rearrange(nn.utils.rnn.pad_sequence(t.split(lens), batch_first=True), "B L H D -> B H L D") for t in (k, v))
            valid = torch.arange(max_len, device=x.device)[None] < torch.tensor(lens, device=x.device)[:, None]
            attn_mask = valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(rearrange(out, "B H N D -> B N (H D)"))


class T2IFinalLayer(nn.Module):
    """PixArt final layer: adaLN-single modulation then a linear projection to patch pixels."""

    def __init__(self, hidden_size: int, num_patch: int, out_channels: int, d_t: int | None = None, d_s: int | None = None) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, num_patch * out_channels, bias=True)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)
        self.out_channels = out_channels
        self.d_t = d_t
        self.d_s = d_s

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        x_mask: torch.Tensor | None = None,
        t0: torch.Tensor | None = None,
        T: int | None = None,
        S: int | None = None,
    ) -> torch.Tensor:
        T = self.d_t if T is None else T
        S = self.d_s if S is None else S
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)
        x = t2i_modulate(self.norm_final(x), shift, scale)
        if x_mask is not None:
            shift_zero, scale_zero = (self.scale_shift_table[None] + t0[:, None]).chunk(2, dim=1)
            # As in the original: the t0 branch normalises the already-modulated x.
            x_zero = t2i_modulate(self.norm_final(x), shift_zero, scale_zero)
            x = t_mask_select(x_mask, x, x_zero, T, S)
        return self.linear(x)


class TimestepEmbedder(DiTTimestepEmbedder):
    """DiT's timestep embedder (GLIDE sinusoid, then a 2-layer MLP); Open-Sora casts the features
    to the model's dtype before the MLP."""

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:  # type: ignore[override]
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size).to(dtype))


class SizeEmbedder(TimestepEmbedder):
    """Embeds per-sample scalars (fps here) with the timestep machinery; repeats to the CFG batch."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__(hidden_size=hidden_size, frequency_embedding_size=frequency_embedding_size)
        self.outdim = hidden_size

    def forward(self, s: torch.Tensor, bs: int) -> torch.Tensor:  # type: ignore[override]
        if s.ndim == 1:
            s = s[:, None]
        assert s.ndim == 2
        if s.shape[0] != bs:
            s = s.repeat(bs // s.shape[0], 1)
            assert s.shape[0] == bs
        b, dims = s.shape
        s_freq = self.timestep_embedding(rearrange(s, "b d -> (b d)"), self.frequency_embedding_size)
        s_emb = self.mlp(s_freq.to(self.dtype))
        return rearrange(s_emb, "(b d) d2 -> b (d d2)", b=b, d=dims, d2=self.outdim)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class CaptionEmbedder(nn.Module):
    """Projects T5 features to the model width; ``y_embedding`` is the learned null caption for CFG."""

    def __init__(
        self,
        in_channels: int,
        hidden_size: int,
        uncond_prob: float,
        act_layer: Callable[[], nn.Module] = approx_gelu,
        token_num: int = 120,
    ) -> None:
        super().__init__()
        self.y_proj = Mlp(in_channels, hidden_features=hidden_size, out_features=hidden_size, act_layer=act_layer)
        self.register_buffer("y_embedding", torch.randn(token_num, in_channels) / in_channels**0.5)
        self.uncond_prob = uncond_prob

    def token_drop(self, caption: torch.Tensor, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Replace whole captions by the null caption (training-time CFG dropout)."""
        if force_drop_ids is None:
            drop_ids = torch.rand(caption.shape[0], device=caption.device) < self.uncond_prob
        else:
            drop_ids = force_drop_ids == 1
        return torch.where(drop_ids[:, None, None, None], self.y_embedding, caption)

    def forward(self, caption: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if train:
            assert caption.shape[2:] == self.y_embedding.shape
        if (train and self.uncond_prob > 0) or force_drop_ids is not None:
            caption = self.token_drop(caption, force_drop_ids)
        return self.y_proj(caption)


class PositionEmbedding2D(nn.Module):
    """Resolution-scaled 2D sin-cos embedding: first half encodes the column, second half the row."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        assert dim % 4 == 0, "dim must be divisible by 4"
        self.dim = dim
        half_dim = dim // 2
        inv_freq = 1.0 / (10000 ** (torch.arange(0, half_dim, 2).float() / half_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _sin_cos(self, pos: torch.Tensor) -> torch.Tensor:
        out = pos[:, None] * self.inv_freq[None]
        return torch.cat((torch.sin(out), torch.cos(out)), dim=-1)

    def forward(self, x: torch.Tensor, h: int, w: int, scale: float = 1.0, base_size: int | None = None) -> torch.Tensor:
        """``[1, h*w, dim]`` embedding in ``x``'s dtype, tokens in row-major (h, w) order."""
        rows = torch.arange(h, device=x.device) / scale
        cols = torch.arange(w, device=x.device) / scale
        if base_size is not None:
            rows = rows * (base_size / h)
            cols = cols * (base_size / w)
        col_grid = repeat(cols, "w -> (h w)", h=h)
        row_grid = repeat(rows, "h -> (h w)", w=w)
        emb = torch.cat([self._sin_cos(col_grid), self._sin_cos(row_grid)], dim=-1)
        return emb[None].to(x.dtype)


class STDiT3Block(nn.Module):
    """One spatial (attention over S) or temporal (attention over T, RoPE) block; see module docstring."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        rope: Callable[[torch.Tensor], torch.Tensor] | None = None,
        qk_norm: bool = False,
        temporal: bool = False,
    ) -> None:
        super().__init__()
        self.temporal = temporal
        self.hidden_size = hidden_size
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True, qk_norm=qk_norm, rope=rope)
        self.cross_attn = MultiHeadCrossAttention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.mlp = Mlp(hidden_size, hidden_features=int(hidden_size * mlp_ratio), act_layer=approx_gelu)
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def t_mask_select(self, x_mask: torch.Tensor, x: torch.Tensor, masked_x: torch.Tensor, T: int, S: int) -> torch.Tensor:
        return t_mask_select(x_mask, x, masked_x, T, S)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor,
        mask: Lens | None = None,
        x_mask: torch.Tensor | None = None,
        t0: torch.Tensor | None = None,
        T: int | None = None,
        S: int | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, T*S, C]``, ``y`` packed captions, ``t``/``t0`` ``[B, 6C]``, ``mask`` caption lengths."""
        B = x.shape[0]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (self.scale_shift_table[None] + t.reshape(B, 6, -1)).chunk(
            6, dim=1
        )
        if x_mask is not None:
            shift_msa_zero, scale_msa_zero, gate_msa_zero, shift_mlp_zero, scale_mlp_zero, gate_mlp_zero = (
                self.scale_shift_table[None] + t0.reshape(B, 6, -1)
            ).chunk(6, dim=1)

        # self-attention branch
        x_m = t2i_modulate(self.norm1(x), shift_msa, scale_msa)
        if x_mask is not None:
            x_m_zero = t2i_modulate(self.norm1(x), shift_msa_zero, scale_msa_zero)
            x_m = self.t_mask_select(x_mask, x_m, x_m_zero, T, S)
        if self.temporal:
            x_m = rearrange(x_m, "B (T S) C -> (B S) T C", T=T, S=S)
            x_m = self.attn(x_m)
            x_m = rearrange(x_m, "(B S) T C -> B (T S) C", T=T, S=S)
        else:
            x_m = rearrange(x_m, "B (T S) C -> (B T) S C", T=T, S=S)
            x_m = self.attn(x_m)
            x_m = rearrange(x_m, "(B T) S C -> B (T S) C", T=T, S=S)
        x_m_s = gate_msa * x_m
        if x_mask is not None:
            x_m_s = self.t_mask_select(x_mask, x_m_s, gate_msa_zero * x_m, T, S)
        x = x + x_m_s

        # cross-attention branch (ungated, un-normalised input)
        x = x + self.cross_attn(x, y, mask)

        # MLP branch
        x_m = t2i_modulate(self.norm2(x), shift_mlp, scale_mlp)
        if x_mask is not None:
            x_m_zero = t2i_modulate(self.norm2(x), shift_mlp_zero, scale_mlp_zero)
            x_m = self.t_mask_select(x_mask, x_m, x_m_zero, T, S)
        x_m = self.mlp(x_m)
        x_m_s = gate_mlp * x_m
        if x_mask is not None:
            x_m_s = self.t_mask_select(x_mask, x_m_s, gate_mlp_zero * x_m, T, S)
        return x + x_m_s


@dataclass
class STDiT3Config:
    """Same fields and defaults as the original ``transformers.PretrainedConfig`` subclass.

    ``drop_path``, ``enable_flash_attn``, ``enable_layernorm_kernel`` and
    ``enable_sequence_parallelism`` are accepted for compatibility and ignored.
    """

    input_size: tuple = (None, None, None)
    input_sq_size: int = 512
    in_channels: int = 4
    patch_size: tuple = (1, 2, 2)
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1
    pred_sigma: bool = True
    drop_path: float = 0.0
    caption_channels: int = 4096
    model_max_length: int = 300
    qk_norm: bool = True
    enable_flash_attn: bool = False
    enable_layernorm_kernel: bool = False
    enable_sequence_parallelism: bool = False
    only_train_temporal: bool = False
    freeze_y_embedder: bool = False
    skip_y_embedder: bool = False
    model_type = "STDiT3"

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> STDiT3Config:
        """Build from a Hugging Face ``config.json`` dict, ignoring keys this config does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})


class STDiT3(nn.Module):
    """Open-Sora v1.2 spatial-temporal DiT (``STDiT3-XL/2``: depth 28, hidden 1152, 16 heads)."""

    config_class = STDiT3Config

    def __init__(self, config: STDiT3Config) -> None:
        super().__init__()
        self.config = config
        self.pred_sigma = config.pred_sigma
        self.in_channels = config.in_channels
        self.out_channels = config.in_channels * 2 if config.pred_sigma else config.in_channels
        self.depth = config.depth
        self.mlp_ratio = config.mlp_ratio
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_heads
        self.patch_size = tuple(config.patch_size)
        self.input_sq_size = config.input_sq_size

        self.pos_embed = PositionEmbedding2D(config.hidden_size)
        self.rope = RotaryEmbedding(dim=self.hidden_size // self.num_heads)

        self.x_embedder = PatchEmbed3D(self.patch_size, config.in_channels, config.hidden_size)
        self.t_embedder = TimestepEmbedder(config.hidden_size)
        self.fps_embedder = SizeEmbedder(self.hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(config.hidden_size, 6 * config.hidden_size, bias=True))
        self.y_embedder = CaptionEmbedder(
            in_channels=config.caption_channels,
            hidden_size=config.hidden_size,
            uncond_prob=config.class_dropout_prob,
            act_layer=approx_gelu,
            token_num=config.model_max_length,
        )
        self.spatial_blocks = nn.ModuleList(
            [
                STDiT3Block(config.hidden_size, config.num_heads, mlp_ratio=config.mlp_ratio, qk_norm=config.qk_norm)
                for _ in range(config.depth)
            ]
        )
        self.temporal_blocks = nn.ModuleList(
            [
                STDiT3Block(
                    config.hidden_size,
                    config.num_heads,
                    mlp_ratio=config.mlp_ratio,
                    qk_norm=config.qk_norm,
                    temporal=True,
                    rope=self.rope.rotate_queries_or_keys,
                )
                for _ in range(config.depth)
            ]
        )
        self.final_layer = T2IFinalLayer(config.hidden_size, math.prod(self.patch_size), self.out_channels)

        self.initialize_weights()
        if config.only_train_temporal:
            self.requires_grad_(False)
            self.temporal_blocks.requires_grad_(True)
        if config.freeze_y_embedder:
            self.y_embedder.requires_grad_(False)

    def initialize_weights(self) -> None:
        """Original init: xavier Linear, zero fps_embedder output and temporal-block output projections."""

        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        nn.init.normal_(self.fps_embedder.mlp[0].weight, std=0.02)
        nn.init.constant_(self.fps_embedder.mlp[0].bias, 0)
        nn.init.constant_(self.fps_embedder.mlp[2].weight, 0)
        nn.init.constant_(self.fps_embedder.mlp[2].bias, 0)
        for block in self.temporal_blocks:
            nn.init.constant_(block.attn.proj.weight, 0)
            nn.init.constant_(block.cross_attn.proj.weight, 0)
            nn.init.constant_(block.mlp.fc2.weight, 0)

    def get_dynamic_size(self, x: torch.Tensor) -> tuple[int, int, int]:
        """Token grid (T, H, W) after padding the latent up to the patch size."""
        T, H, W = (-(-n // p) for n, p in zip(x.shape[2:], self.patch_size, strict=True))
        return T, H, W

    def encode_text(self, y: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int]]:
        """Project captions ``[B, 1, L, C_t5]`` and pack the unmasked tokens into ``[1, sum(lens), C]``."""
        y = self.y_embedder(y, self.training)
        if mask is not None:
            if mask.shape[0] != y.shape[0]:
                mask = mask.repeat(y.shape[0] // mask.shape[0], 1)
            mask = mask.squeeze(1).squeeze(1)
            y = y.squeeze(1).masked_select(mask.unsqueeze(-1) != 0).view(1, -1, self.hidden_size)
            y_lens = mask.sum(dim=1).tolist()
        else:
            y_lens = [y.shape[2]] * y.shape[0]
            y = y.squeeze(1).view(1, -1, self.hidden_size)
        return y, y_lens

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor | None = None,
        x_mask: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
        height: torch.Tensor | None = None,
        width: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Predict ``[B, out_channels, T, H, W]`` (float32) from latents ``x`` ``[B, C, T, H, W]``.

        ``timestep`` ``[B]`` in [0, 1000]; ``y`` ``[B, 1, L, caption_channels]``; ``mask`` ``[B or n, L]``
        T5 attention mask; ``x_mask`` ``[B, T]`` bool (False = conditioning frame, modulated as t=0);
        ``fps``/``height``/``width`` ``[n]`` (only ``height[0]``/``width[0]`` are read).
        """
        dtype = self.x_embedder.proj.weight.dtype
        B = x.size(0)
        x = x.to(dtype)
        timestep = timestep.to(dtype)
        y = y.to(dtype)

        _, _, Tx, Hx, Wx = x.size()
        T, H, W = self.get_dynamic_size(x)
        S = H * W
        base_size = round(S**0.5)
        resolution_sq = (height[0].item() * width[0].item()) ** 0.5
        scale = resolution_sq / self.input_sq_size
        pos_emb = self.pos_embed(x, H, W, scale=scale, base_size=base_size)

        t = self.t_embedder(timestep, dtype=x.dtype)
        fps = self.fps_embedder(fps.unsqueeze(1), B)
        t = t + fps
        t_mlp = self.t_block(t)
        t0 = t0_mlp = None
        if x_mask is not None:
            t0 = self.t_embedder(torch.zeros_like(timestep), dtype=x.dtype) + fps
            t0_mlp = self.t_block(t0)

        if self.config.skip_y_embedder:
            y_lens = mask.long().tolist() if isinstance(mask, torch.Tensor) else mask
        else:
            y, y_lens = self.encode_text(y, mask)

        x = self.x_embedder(x)
        x = rearrange(x, "B (T S) C -> B T S C", T=T, S=S) + pos_emb
        x = rearrange(x, "B T S C -> B (T S) C")

        for spatial_block, temporal_block in zip(self.spatial_blocks, self.temporal_blocks, strict=True):
            x = spatial_block(x, y, t_mlp, y_lens, x_mask, t0_mlp, T, S)
            x = temporal_block(x, y, t_mlp, y_lens, x_mask, t0_mlp, T, S)

        x = self.final_layer(x, t, x_mask, t0, T, S)
        x = self.unpatchify(x, T, H, W, Tx, Hx, Wx)
        return x.to(torch.float32)

    def unpatchify(self, x: torch.Tensor, N_t: int, N_h: int, N_w: int, R_t: int, R_h: int, R_w: int) -> torch.Tensor:
        """``[B, N, prod(patch)*C_out] -> [B, C_out, R_t, R_h, R_w]`` (drops the patch padding)."""
        T_p, H_p, W_p = self.patch_size
        x = rearrange(
            x,
            "B (N_t N_h N_w) (T_p H_p W_p C_out) -> B C_out (N_t T_p) (N_h H_p) (N_w W_p)",
            N_t=N_t,
            N_h=N_h,
            N_w=N_w,
            T_p=T_p,
            H_p=H_p,
            W_p=W_p,
            C_out=self.out_channels,
        )
        return x[:, :, :R_t, :R_h, :R_w]
