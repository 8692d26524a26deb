"""Open-Sora 2.0 ``MMDiTModel`` (a Flux derivative) re-implemented with plain torch + einops.

Mirrors ``opensora/models/mmdit/{model,layers,math}.py`` (main branch).  Attribute
names follow the original so its state dict loads with ``load_state_dict(strict=True)``.
flash-attn is replaced by :func:`torch.nn.functional.scaled_dot_product_attention`,
Liger's fused RMSNorm / RoPE kernels by their torch equivalents, and gradient
checkpointing is dropped (``forward`` is the original ``forward_ckpt`` without it).

Where values enter the residual stream (``vec`` = time + CLIP (+ guidance) embedding):

``DoubleStreamBlock`` (``DoubleStreamBlockProcessor.__call__(attn, img, txt, vec, pe)``;
``img_mod1/img_mod2 = attn.img_mod(vec)``, same for ``txt``; the joint attention runs
once over ``cat(txt, img)`` and is split back)::

    img = img + img_mod1.gate * attn.img_attn.proj(img_attn)
    img = img + img_mod2.gate * attn.img_mlp((1 + img_mod2.scale) * attn.img_norm2(img) + img_mod2.shift)
    txt = txt + txt_mod1.gate * attn.txt_attn.proj(txt_attn)
    txt = txt + txt_mod2.gate * attn.txt_mlp((1 + txt_mod2.scale) * attn.txt_norm2(txt) + txt_mod2.shift)

``SingleStreamBlock`` (``SingleStreamBlockProcessor.__call__(attn, x, vec, pe)`` on
``x = cat(txt, img)``; attention and MLP run in parallel from one ``linear1``)::

    x = x + mod.gate * attn.linear2(cat(attention_out, attn.mlp_act(mlp_in)))

So the gated residual updates are exactly the outputs of the module calls
``img_attn.proj``, ``img_mlp``, ``txt_attn.proj``, ``txt_mlp`` (double blocks) and
``linear2`` (single blocks); each is multiplied by a ``[B, 1, C]`` gate before the add.
The image part of the single-stream sequence is ``x[:, txt_len:]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

PosEmb = Tensor | tuple[Tensor, Tensor]


def rope(pos: Tensor, dim: int, theta: int) -> Tensor:
    """Flux RoPE rotation matrices ``[..., n, dim/2, 2, 2]`` (angles in float64, returned float32)."""
    assert dim % 2 == 0
    omega = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim))
    out = torch.einsum("...n,d->...nd", pos, omega)
    out = torch.stack([torch.cos(out), -torch.sin(out), torch.sin(out), torch.cos(out)], dim=-1)
    return rearrange(out, "... (i j) -> ... i j", i=2, j=2).float()


def liger_rope(pos: Tensor, dim: int, theta: int) -> tuple[Tensor, Tensor]:
    """Half-width ``cos``/``sin`` tables ``[..., n, dim/2]`` for the rotate-half (Liger) RoPE."""
    assert dim % 2 == 0
    omega = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=pos.device) / dim))
    out = torch.einsum("...n,d->...nd", pos, omega)
    return out.cos(), out.sin()


def apply_rope(xq: Tensor, xk: Tensor, freqs_cis: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate interleaved channel pairs ``(2i, 2i+1)`` of q/k (``[B, H, L, D]``) in float32."""

    def rotate(x: Tensor) -> Tensor:
        x_ = x.float().reshape(*x.shape[:-1], -1, 1, 2)
        out = freqs_cis[..., 0] * x_[..., 0] + freqs_cis[..., 1] * x_[..., 1]
        return out.reshape(*x.shape).type_as(x)

    return rotate(xq), rotate(xk)


def apply_rope_rotate_half(xq: Tensor, xk: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Torch equivalent of Liger's ``LigerRopeFunction`` (HF-Llama rotate-half RoPE).

    Channel ``i`` is paired with ``i + D/2``; ``cos``/``sin`` are ``[B, L, D]`` with the two
    halves equal.  Computed in the tables' dtype and cast back, like the kernel.  The pinned
    liger-kernel 0.5.2 kernel indexes the tables by sequence position only, so every sample
    uses the tables of batch element 0; this is reproduced (ids are identical across the
    batch in Open-Sora's sampler, so it only matters for unusual inputs).
    """
    cos, sin = cos[:1, None], sin[:1, None]

    def rotate(x: Tensor) -> Tensor:
        xf = x.to(cos.dtype)
        x1, x2 = xf.chunk(2, dim=-1)
        return (xf * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)

    return rotate(xq), rotate(xk)


def attention(q: Tensor, k: Tensor, v: Tensor, pe: PosEmb) -> Tensor:
    """RoPE then full (non-causal) attention; ``[B, H, L, D] -> [B, L, H*D]``."""
    if isinstance(pe, Tensor):
        q, k = apply_rope(q, k, pe)
    else:
        q, k = apply_rope_rotate_half(q, k, *pe)
    x = F.scaled_dot_product_attention(q, k, v)
    return rearrange(x, "B H L D -> B L (H D)")


class EmbedND(nn.Module):
    """Per-axis RoPE (axes t, h, w) concatenated over the head dim; returns ``[B, 1, L, D/2, 2, 2]``."""

    def __init__(self, dim: int, theta: int, axes_dim: list[int]) -> None:
        super().__init__()
        self.dim = dim
        self.theta = theta
        self.axes_dim = axes_dim

    def forward(self, ids: Tensor) -> Tensor:
        emb = torch.cat([rope(ids[..., i], self.axes_dim[i], self.theta) for i in range(ids.shape[-1])], dim=-3)
        return emb.unsqueeze(1)


class LigerEmbedND(nn.Module):
    """Per-axis rotate-half RoPE tables; returns ``(cos, sin)`` each ``[B, L, D]`` (halves repeated)."""

    def __init__(self, dim: int, theta: int, axes_dim: list[int]) -> None:
        super().__init__()
        self.dim = dim
        self.theta = theta
        self.axes_dim = axes_dim

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        tables = [liger_rope(ids[..., i], self.axes_dim[i], self.theta) for i in range(ids.shape[-1])]
        cos = torch.cat([c for c, _ in tables], dim=-1).repeat(1, 1, 2).contiguous()
        sin = torch.cat([s for _, s in tables], dim=-1).repeat(1, 1, 2).contiguous()
        return cos, sin


def timestep_embedding(t: Tensor, dim: int, max_period: int = 10000, time_factor: float = 1000.0) -> Tensor:
    """Sinusoidal (cos, sin) features of ``time_factor * t``; cast to ``t``'s dtype when floating."""
    t = time_factor * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    if torch.is_floating_point(t):
        embedding = embedding.to(t)
    return embedding


class MLPEmbedder(nn.Module):
    """``out_layer(silu(in_layer(x)))``."""

    def __init__(self, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim, bias=True)
        self.silu = nn.SiLU()
        self.out_layer = nn.Linear(hidden_dim, hidden_dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(self.silu(self.in_layer(x)))


class RMSNorm(nn.Module):
    """RMSNorm (eps 1e-6) normalised in float32, scaled after casting back (Liger 'llama' mode)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x_dtype = x.dtype
        x = x.float()
        rrms = torch.rsqrt(torch.mean(x**2, dim=-1, keepdim=True) + 1e-6)
        return (x * rrms).to(dtype=x_dtype) * self.scale


class QKNorm(nn.Module):
    """Separate RMSNorms for queries and keys; outputs cast to ``v``'s dtype."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.query_norm(q).to(v), self.key_norm(k).to(v)


class SelfAttention(nn.Module):
    """Projection container of one stream (``qkv`` or ``q_proj/k_proj/v_proj``, ``norm``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, fused_qkv: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.fused_qkv = fused_qkv
        head_dim = dim // num_heads
        if fused_qkv:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        else:
            self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
            self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
            self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.norm = QKNorm(head_dim)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """QK-normalised ``q, k, v`` as ``[B, H, L, D]``."""
        if self.fused_qkv:
            q, k, v = rearrange(self.qkv(x), "B L (K H D) -> K B H L D", K=3, H=self.num_heads)
        else:
            q, k, v = (rearrange(lin(x), "B L (H D) -> B H L D", H=self.num_heads) for lin in (self.q_proj, self.k_proj, self.v_proj))
        q, k = self.norm(q, k, v)
        return q, k, v

    def forward(self, x: Tensor, pe: PosEmb) -> Tensor:
        return self.proj(attention(*self.qkv_heads(x), pe=pe))


@dataclass
class ModulationOut:
    shift: Tensor
    scale: Tensor
    gate: Tensor


class Modulation(nn.Module):
    """``vec -> (shift, scale, gate)`` x1 (single) or x2 (double), each ``[B, 1, C]``."""

    def __init__(self, dim: int, double: bool) -> None:
        super().__init__()
        self.is_double = double
        self.multiplier = 6 if double else 3
        self.lin = nn.Linear(dim, self.multiplier * dim, bias=True)

    def forward(self, vec: Tensor) -> tuple[ModulationOut, ModulationOut | None]:
        out = self.lin(F.silu(vec))[:, None, :].chunk(self.multiplier, dim=-1)
        return ModulationOut(*out[:3]), (ModulationOut(*out[3:]) if self.is_double else None)


class DoubleStreamBlockProcessor:
    """Computes a double-stream block; kept separate so the projections stay wrappable module calls."""

    def __call__(self, attn: DoubleStreamBlock, img: Tensor, txt: Tensor, vec: Tensor, pe: PosEmb) -> tuple[Tensor, Tensor]:
        img_mod1, img_mod2 = attn.img_mod(vec)
        txt_mod1, txt_mod2 = attn.txt_mod(vec)

        img_modulated = (1 + img_mod1.scale) * attn.img_norm1(img) + img_mod1.shift
        img_q, img_k, img_v = attn.img_attn.qkv_heads(img_modulated)
        txt_modulated = (1 + txt_mod1.scale) * attn.txt_norm1(txt) + txt_mod1.shift
        txt_q, txt_k, txt_v = attn.txt_attn.qkv_heads(txt_modulated)

        # joint attention over [txt, img]
        q = torch.cat((txt_q, img_q), dim=2)
        k = torch.cat((txt_k, img_k), dim=2)
        v = torch.cat((txt_v, img_v), dim=2)
        attn1 = attention(q, k, v, pe=pe)
        txt_attn, img_attn = attn1[:, : txt_q.shape[2]], attn1[:, txt_q.shape[2] :]

        img = img + img_mod1.gate * attn.img_attn.proj(img_attn)
        img = img + img_mod2.gate * attn.img_mlp((1 + img_mod2.scale) * attn.img_norm2(img) + img_mod2.shift)
        txt = txt + txt_mod1.gate * attn.txt_attn.proj(txt_attn)
        txt = txt + txt_mod2.gate * attn.txt_mlp((1 + txt_mod2.scale) * attn.txt_norm2(txt) + txt_mod2.shift)
        return img, txt


class DoubleStreamBlock(nn.Module):
    """MMDiT block with separate img/txt weights and joint attention."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = False, fused_qkv: bool = True) -> None:
        super().__init__()
        mlp_hidden_dim = int(hidden_size * mlp_ratio)
        self.num_heads = num_heads
        self.hidden_size = hidden_size
        self.head_dim = hidden_size // num_heads

        self.img_mod = Modulation(hidden_size, double=True)
        self.img_norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.img_attn = SelfAttention(hidden_size, num_heads=num_heads, qkv_bias=qkv_bias, fused_qkv=fused_qkv)
        self.img_norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.img_mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden_dim, bias=True),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_hidden_dim, hidden_size, bias=True),
        )

        self.txt_mod = Modulation(hidden_size, double=True)
        self.txt_norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.txt_attn = SelfAttention(hidden_size, num_heads=num_heads, qkv_bias=qkv_bias, fused_qkv=fused_qkv)
        self.txt_norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.txt_mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden_dim, bias=True),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_hidden_dim, hidden_size, bias=True),
        )
        self.set_processor(DoubleStreamBlockProcessor())

    def set_processor(self, processor: DoubleStreamBlockProcessor) -> None:
        self.processor = processor

    def get_processor(self) -> DoubleStreamBlockProcessor:
        return self.processor

    def forward(self, img: Tensor, txt: Tensor, vec: Tensor, pe: PosEmb, **kwargs: Any) -> tuple[Tensor, Tensor]:
        return self.processor(self, img, txt, vec, pe)


class SingleStreamBlockProcessor:
    """Computes a single-stream block (parallel attention + MLP sharing ``linear1``/``linear2``)."""

    def __call__(self, attn: SingleStreamBlock, x: Tensor, vec: Tensor, pe: PosEmb) -> Tensor:
        mod, _ = attn.modulation(vec)
        x_mod = (1 + mod.scale) * attn.pre_norm(x) + mod.shift
        if attn.fused_qkv:
            qkv, mlp = torch.split(attn.linear1(x_mod), [3 * attn.hidden_size, attn.mlp_hidden_dim], dim=-1)
            q, k, v = rearrange(qkv, "B L (K H D) -> K B H L D", K=3, H=attn.num_heads)
        else:
            q = rearrange(attn.q_proj(x_mod), "B L (H D) -> B H L D", H=attn.num_heads)
            k = rearrange(attn.k_proj(x_mod), "B L (H D) -> B H L D", H=attn.num_heads)
            v, mlp = torch.split(attn.v_mlp(x_mod), [attn.hidden_size, attn.mlp_hidden_dim], dim=-1)
            v = rearrange(v, "B L (H D) -> B H L D", H=attn.num_heads)
        q, k = attn.norm(q, k, v)
        attn_1 = attention(q, k, v, pe=pe)
        output = attn.linear2(torch.cat((attn_1, attn.mlp_act(mlp)), 2))
        return x + mod.gate * output


class SingleStreamBlock(nn.Module):
    """DiT block with parallel attention/MLP (ViT-22B style) over the joint [txt, img] sequence."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_scale: float | None = None,
        fused_qkv: bool = True,
    ) -> None:
        super().__init__()
        self.hidden_dim = hidden_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.fused_qkv = fused_qkv
        self.mlp_hidden_dim = int(hidden_size * mlp_ratio)
        if fused_qkv:
            self.linear1 = nn.Linear(hidden_size, hidden_size * 3 + self.mlp_hidden_dim)
        else:
            self.q_proj = nn.Linear(hidden_size, hidden_size)
            self.k_proj = nn.Linear(hidden_size, hidden_size)
            self.v_mlp = nn.Linear(hidden_size, hidden_size + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(hidden_size + self.mlp_hidden_dim, hidden_size)
        self.norm = QKNorm(self.head_dim)
        self.hidden_size = hidden_size
        self.pre_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden_size, double=False)
        self.set_processor(SingleStreamBlockProcessor())

    def set_processor(self, processor: SingleStreamBlockProcessor) -> None:
        self.processor = processor

    def get_processor(self) -> SingleStreamBlockProcessor:
        return self.processor

    def forward(self, x: Tensor, vec: Tensor, pe: PosEmb, **kwargs: Any) -> Tensor:
        return self.processor(self, x, vec, pe)


class LastLayer(nn.Module):
    """adaLN (shift, scale from ``vec``) + linear to packed latent channels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        x = (1 + scale[:, None, :]) * self.norm_final(x) + shift[:, None, :]
        return self.linear(x)


@dataclass
class MMDiTConfig:
    """Same fields as the original dataclass.

    The original has no defaults for the architecture fields; here they default to the
    released Open-Sora 2.0 video model (``configs/diffusion/inference/256px.py``) except
    ``fused_qkv``/``use_liger_rope``/``cond_embed``, which keep the original defaults
    (the released model sets ``fused_qkv=False, use_liger_rope=True, cond_embed=True``).
    ``from_pretrained``, ``cache_dir`` and ``grad_ckpt_settings`` are accepted and unused.
    """

    model_type = "MMDiT"
    from_pretrained: str | None = None
    cache_dir: str | None = None
    in_channels: int = 64
    vec_in_dim: int = 768
    context_in_dim: int = 4096
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    axes_dim: list[int] = field(default_factory=lambda: [16, 56, 56])
    theta: int = 10_000
    qkv_bias: bool = True
    guidance_embed: bool = False
    cond_embed: bool = False
    fused_qkv: bool = True
    grad_ckpt_settings: tuple[int, int] | None = None
    use_liger_rope: bool = False
    patch_size: int = 2

    def get(self, attribute_name: str, default: Any = None) -> Any:
        return getattr(self, attribute_name, default)

    def __contains__(self, attribute_name: str) -> bool:
        return hasattr(self, attribute_name)


class MMDiTModel(nn.Module):
    """Open-Sora 2.0 video MMDiT: ``depth`` double-stream blocks then ``depth_single_blocks`` single-stream blocks."""

    config_class = MMDiTConfig

    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        self.config = config
        self.in_channels = config.in_channels
        self.out_channels = self.in_channels
        self.patch_size = config.patch_size
        if config.hidden_size % config.num_heads != 0:
            raise ValueError(f"Hidden size {config.hidden_size} must be divisible by num_heads {config.num_heads}")
        pe_dim = config.hidden_size // config.num_heads
        if sum(config.axes_dim) != pe_dim:
            raise ValueError(f"Got {config.axes_dim} but expected positional dim {pe_dim}")
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_heads

        pe_embedder_cls = LigerEmbedND if config.use_liger_rope else EmbedND
        self.pe_embedder = pe_embedder_cls(dim=pe_dim, theta=config.theta, axes_dim=config.axes_dim)
        self.img_in = nn.Linear(self.in_channels, self.hidden_size, bias=True)
        self.time_in = MLPEmbedder(in_dim=256, hidden_dim=self.hidden_size)
        self.vector_in = MLPEmbedder(config.vec_in_dim, self.hidden_size)
        self.guidance_in = MLPEmbedder(in_dim=256, hidden_dim=self.hidden_size) if config.guidance_embed else nn.Identity()
        self.cond_in = nn.Linear(self.in_channels + self.patch_size**2, self.hidden_size, bias=True) if config.cond_embed else nn.Identity()
        self.txt_in = nn.Linear(config.context_in_dim, self.hidden_size)

        self.double_blocks = nn.ModuleList(
            [
                DoubleStreamBlock(
                    self.hidden_size,
                    self.num_heads,
                    mlp_ratio=config.mlp_ratio,
                    qkv_bias=config.qkv_bias,
                    fused_qkv=config.fused_qkv,
                )
                for _ in range(config.depth)
            ]
        )
        self.single_blocks = nn.ModuleList(
            [
                SingleStreamBlock(self.hidden_size, self.num_heads, mlp_ratio=config.mlp_ratio, fused_qkv=config.fused_qkv)
                for _ in range(config.depth_single_blocks)
            ]
        )
        self.final_layer = LastLayer(self.hidden_size, 1, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Only the condition projection is zero-initialised; everything else keeps torch defaults."""
        if self.config.cond_embed:
            nn.init.zeros_(self.cond_in.weight)
            nn.init.zeros_(self.cond_in.bias)

    def prepare_block_inputs(
        self,
        img: Tensor,
        img_ids: Tensor,
        txt: Tensor,
        txt_ids: Tensor,
        timesteps: Tensor,
        y_vec: Tensor,
        cond: Tensor | None = None,
        guidance: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, PosEmb]:
        """Project img/txt tokens, build ``vec`` and the RoPE for the ``[txt, img]`` sequence."""
        if img.ndim != 3 or txt.ndim != 3:
            raise ValueError("Input img and txt tensors must have 3 dimensions.")
        img = self.img_in(img)
        if self.config.cond_embed:
            if cond is None:
                raise ValueError("Didn't get conditional input for conditional model.")
            img = img + self.cond_in(cond)

        vec = self.time_in(timestep_embedding(timesteps, 256))
        if self.config.guidance_embed:
            if guidance is None:
                raise ValueError("Didn't get guidance strength for guidance distilled model.")
            vec = vec + self.guidance_in(timestep_embedding(guidance, 256))
        vec = vec + self.vector_in(y_vec)

        txt = self.txt_in(txt)
        pe = self.pe_embedder(torch.cat((txt_ids, img_ids), dim=1))
        return img, txt, vec, pe

    def forward(
        self,
        img: Tensor,
        img_ids: Tensor,
        txt: Tensor,
        txt_ids: Tensor,
        timesteps: Tensor,
        y_vec: Tensor,
        cond: Tensor | None = None,
        guidance: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Velocity for packed latents ``img`` ``[B, L_img, in_channels]``; ``timesteps`` ``[B]`` in [0, 1]."""
        img, txt, vec, pe = self.prepare_block_inputs(img, img_ids, txt, txt_ids, timesteps, y_vec, cond, guidance)
        for block in self.double_blocks:
            img, txt = block(img, txt, vec, pe)
        img = torch.cat((txt, img), 1)
        for block in self.single_blocks:
            img = block(img, vec, pe)
        img = img[:, txt.shape[1] :, ...]
        return self.final_layer(img, vec)
