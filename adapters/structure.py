"""Adapters described as data: find a model's block stacks and cacheable components by structure.

Diffusion transformers share a small vocabulary: lists of blocks (``transformer_blocks``,
``single_transformer_blocks``, ``blocks``, ``layers``, temporal stacks), attention modules (diffusers'
``Attention`` and the ``AttentionModuleMixin`` classes), feed-forward modules, and a few block shapes.
This module finds them in any model, so a model family costs a :class:`Layout` (usually empty) in a
table, not code:

- a **block stack** is a ``ModuleList`` (or the blocks of a ``ModuleDict``) whose blocks hold
  attention or feed-forward modules, not nested in another stack;
- in every block, each **attention** module and **feed-forward** module is a component: its output is
  the value that enters the residual stream (through the block's gate), and reusing it skips all of
  its work (a joint attention's q/k/v, attention and output projections of both streams together);
- a **region** is a block shape where several modules only feed one: a single-stream parallel block
  (FLUX, HunyuanVideo) joins its attention and MLP input projection and projects them with
  ``proj_out``; caching ``proj_out`` with the other two as followers skips the whole branch.

Nothing here imports diffusers: modules are recognised by class names and attributes.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from smoothcache_core import Component, ForwardArgument, Streams, class_names

from .streams import diffusers_block_streams

#: Forward arguments that carry the timestep, most usual first.
TIMESTEP_ARGUMENTS = ("timestep", "timesteps", "t", "vision_timesteps", "decoder_noise_time", "bb_ca_time", "sigma", "noise_level")
#: Attribute names of feed-forward modules (plain ``nn.Sequential`` MLPs have no telling class name).
FEED_FORWARD_NAMES = frozenset(
    {
        "ff",
        "ffn",
        "mlp",
        "feed_forward",
        "ff_context",
        "img_mlp",
        "txt_mlp",
        "txt_ff",
        "ff_i",
        "ff_t",
        "audio_ff",
        "mlp_moe_gen",
        "DenseReluDense",
        "transition",
        "transition_out",
        "tri_mult_out",
        "tri_mult_in",
    }
)
#: Class-name fragments of feed-forward modules.
FEED_FORWARD_CLASSES = ("FeedForward", "MLP", "Mlp", "FFN", "GLUMBConv", "SwiGLU")
#: Attributes of an attention module's projections: a class named "...Attention..." without any of
#: them is a wrapper around one (T5-style sub-layers), searched inside instead.
PROJECTIONS = ("to_q", "to_k", "to_qkv", "q_proj", "qkv", "to_out", "out_proj", "wq", "query")
#: Class-name fragments of modules never searched for components (their linears are modulation).
NOT_COMPONENTS = ("Norm", "Embed", "Embedding", "Modulation", "RoPE", "Rotary", "Timestep")


@dataclass(frozen=True)
class Region:
    """A block shape where ``followers`` only feed ``terminal``: the terminal's output is cached and
    the followers are skipped with it (children of the block, by attribute name)."""

    terminal: str
    followers: tuple[str, ...]
    kind: str


#: The regions found in diffusers' blocks: the single-stream parallel block (FLUX, HunyuanVideo,
#: Chroma, LongCat, Ovis, Motif), an inline SwiGLU (PRX) and a two-module feed-forward (MiniMax Music).
REGIONS = (
    Region("proj_out", ("attn", "proj_mlp"), "parallel_attn_mlp"),
    Region("down_proj", ("gate_proj", "up_proj"), "ffn"),
    Region("ff_out", ("ff_in",), "ffn"),
)


@dataclass(frozen=True)
class Layout:
    """What a family states where structure alone is not enough; every field is optional.

    ``timestep``: the forward argument that carries the timestep (default: the first of
    :data:`TIMESTEP_ARGUMENTS` the forward takes). ``stacks``: the block stacks' module paths
    (default: found). ``skip``: attribute names inside blocks that are never cached.
    ``regions``: the region shapes to look for.
    """

    timestep: str | None = None
    stacks: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    regions: tuple[Region, ...] = REGIONS


#: Attribute names of attention modules whose class does not say so (linear attentions).
ATTENTION_NAMES = frozenset({"attn", "attn1", "attn2", "attention", "self_attn", "cross_attn", "self_attention", "cross_attention"})


def is_attention(module: nn.Module, name: str = "") -> bool:
    """diffusers' attention modules (``Attention``, ``AttentionModuleMixin`` classes) and look-alikes:
    a class named like one with projections, or a module with projections in an attention's place."""
    if name in ATTENTION_NAMES and any(hasattr(module, projection) for projection in PROJECTIONS):
        return True
    names = class_names(module)
    if "AttentionModuleMixin" in names or "Attention" in names:
        return True
    own = type(module).__name__
    return "Attention" in own and "Processor" not in own and any(hasattr(module, name) for name in PROJECTIONS)


def is_feed_forward(module: nn.Module, name: str) -> bool:
    own = type(module).__name__
    if any(fragment in own for fragment in NOT_COMPONENTS):
        return False
    return name in FEED_FORWARD_NAMES or any(fragment in own for fragment in FEED_FORWARD_CLASSES)


def _searchable(module: nn.Module) -> bool:
    own = type(module).__name__
    return not any(fragment in own for fragment in NOT_COMPONENTS) and any(True for _ in module.children())


def attention_kind(module: nn.Module, name: str) -> str:
    """``cross_attn`` (reads another sequence), ``joint_attn`` (two streams in, two out) or ``self_attn``."""
    declared = getattr(module, "is_cross_attention", None)
    lowered = name.lower()
    named_cross = "self" not in lowered and ("cross" in lowered or "_to_" in lowered or lowered.endswith("attn2"))
    if declared is True or (declared is None and named_cross):
        return "cross_attn"
    if getattr(module, "add_q_proj", None) is not None or getattr(module, "add_k_proj", None) is not None:
        return "joint_attn"
    return "self_attn"


def feed_forward_kind(name: str) -> str:
    """``ffn_context`` for a text stream's feed-forward, ``ffn`` otherwise."""
    return "ffn_context" if any(word in name for word in ("context", "txt", "text")) or name.endswith("_t") else "ffn"


def _parts(module: nn.Module, prefix: str, skip: tuple[str, ...]) -> Iterator[tuple[str, nn.Module, str]]:
    """(path inside the block, module, kind) of every attention and feed-forward module below ``module``."""
    for name, child in module.named_children():
        if name in skip:
            continue
        path = f"{prefix}{name}"
        if is_attention(child, name):
            yield path, child, attention_kind(child, name)
        elif is_feed_forward(child, name):
            yield path, child, feed_forward_kind(name)
        elif _searchable(child):
            yield from _parts(child, f"{path}.", skip)


def block_components(block: nn.Module, stack: str, index: int, layout: Layout = Layout()) -> list[Component]:
    """The components of one block, keyed ``<stack>.<index>.<path>``; a region takes the place of its
    followers. A block that is itself an attention or feed-forward module is one component."""
    if is_attention(block) or is_feed_forward(block, stack.rsplit(".", 1)[-1]):
        kind = attention_kind(block, stack) if is_attention(block) else "ffn"
        name = "attn" if is_attention(block) else "ff"
        return [Component.of_module(block, key=f"{stack}.{index}", kind=kind, name=name, block_kind=stack, index=index)]
    parts: list[tuple[Any, ...]] = list(_parts(block, "", layout.skip))  # (path, module, kind[, followers])
    for region in layout.regions:
        children = {name: getattr(block, name, None) for name in (region.terminal, *region.followers)}
        if all(isinstance(child, nn.Module) for child in children.values()):
            followers = [children[name] for name in region.followers]
            parts = [part for part in parts if part[1] not in followers and part[1] is not children[region.terminal]]
            parts.append((region.terminal, children[region.terminal], region.kind, followers))
    return [
        Component.of_module(
            part[1],
            key=f"{stack}.{index}.{part[0]}",
            kind=part[2],
            name=part[0],
            block_kind=stack,
            index=index,
            followers=part[3] if len(part) > 3 else (),
        )
        for part in parts
    ]


def _holds_parts(block: nn.Module, layout: Layout) -> bool:
    return is_attention(block) or any(True for _ in _parts(block, "", layout.skip))


def _stack_blocks(module: nn.Module) -> list[nn.Module] | None:
    """The blocks of a ``ModuleList`` or ``ModuleDict`` of blocks (not of further lists); else None."""
    if isinstance(module, nn.ModuleList):
        blocks = list(module)
    elif isinstance(module, nn.ModuleDict):
        blocks = list(module.values())
    else:
        return None
    if not blocks or any(isinstance(block, (nn.ModuleList, nn.ModuleDict)) for block in blocks):
        return None
    return blocks


def find_stacks(model: nn.Module, layout: Layout = Layout()) -> list[str]:
    """Module paths of the block stacks, in registration order (which is execution order in diffusers)."""
    if layout.stacks is not None:
        return list(layout.stacks)
    stacks: list[str] = []
    closed: list[str] = []  # stacks found, and modules whose insides are never stacks
    for path, module in model.named_modules():
        if any(path.startswith(f"{outer}.") for outer in closed):
            continue
        blocks = _stack_blocks(module)
        if is_attention(module) or (path and is_feed_forward(module, path.rsplit(".", 1)[-1])):
            closed.append(path)
        elif blocks is not None and any(_holds_parts(block, layout) for block in blocks):
            stacks.append(path)
            closed.append(path)
    return stacks


def stack_blocks(model: nn.Module, stack: str) -> list[nn.Module]:
    """The blocks of the stack at module path ``stack``."""
    return _stack_blocks(model.get_submodule(stack)) or []


def discover_components(model: nn.Module, layout: Layout = Layout()) -> list[Component]:
    """Every stack's blocks' components, stack by stack."""
    return [
        component
        for stack in find_stacks(model, layout)
        for index, block in enumerate(stack_blocks(model, stack))
        for component in block_components(block, stack, index, layout)
    ]


def timestep_argument(model: nn.Module, layout: Layout = Layout()) -> ForwardArgument | None:
    """The forward argument that carries the timestep, by name and position; None if there is none."""
    try:
        parameters = [p for p in inspect.signature(type(model).forward).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        return None
    names = [p.name for p in parameters]
    wanted = (layout.timestep,) if layout.timestep else TIMESTEP_ARGUMENTS
    for name in wanted:
        if name in names:
            return ForwardArgument(name, names.index(name))
    return None


@dataclass(frozen=True)
class StructuralAdapter:
    """A ModelAdapter for the models of ``classes`` (class names, matched anywhere in the MRO), whose
    components are found by structure as ``layout`` says. ``family`` and ``modality`` describe it."""

    name: str
    classes: tuple[str, ...]
    layout: Layout = field(default_factory=Layout)
    family: str = ""
    modality: str = "image"

    def matches(self, model: nn.Module) -> bool:
        return bool(class_names(model) & set(self.classes)) and timestep_argument(model, self.layout) is not None

    def components(self, model: nn.Module) -> list[Component]:
        return discover_components(model, self.layout)

    def step_source(self, model: nn.Module) -> ForwardArgument:
        source = timestep_argument(model, self.layout)
        if source is None:
            raise ValueError(f"{type(model).__name__}.forward takes no timestep argument")
        return source

    def block_streams(self, block: nn.Module) -> Streams | None:
        """Which argument each of a block's outputs continues, where diffusers registers it."""
        return diffusers_block_streams(block)
