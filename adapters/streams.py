"""Which input each output of a diffusers block continues, as diffusers registers it for its own caches.

diffusers' ``TransformerBlockRegistry`` (used by its FirstBlockCache and MagCache) says, per block
class, which output is the image stream and which the text stream, and the arguments they come
from. Whole-block caching pairs each output with that argument: exact, with no reading of values,
under ``torch.compile`` too. Blocks it does not list are paired by shape (see ``blocks.py``).
"""

from __future__ import annotations

from torch import nn

from smoothcache_core import Streams

#: Streams by block class, looked up once per class.
_FOUND: dict[type, Streams | None] = {}
#: Blocks diffusers does not register, by class name: one row per family.
UNREGISTERED: dict[str, Streams] = {
    # returns (its hint for the main stream: a projection of no input, kept as computed; the control stream)
    "WanVACETransformerBlock": (None, "control_hidden_states"),
}


def diffusers_block_streams(block: nn.Module) -> Streams | None:
    """The streams diffusers registers for ``block``'s class (None where it registers none)."""
    kind = type(block)
    if kind not in _FOUND:
        _FOUND[kind] = _registered(kind)
    return _FOUND[kind]


def _registered(kind: type) -> Streams | None:
    if kind.__name__ in UNREGISTERED:
        return UNREGISTERED[kind.__name__]
    try:
        from diffusers.hooks._helpers import TransformerBlockRegistry
    except ImportError:  # another diffusers layout: blocks are paired by shape
        return None
    try:
        metadata = TransformerBlockRegistry.get(kind)
    except (ValueError, KeyError):
        return None
    text = metadata.return_encoder_hidden_states_index
    streams: list[str | None] = [None] * (1 if text is None else 2)
    if max(metadata.return_hidden_states_index, text or 0) >= len(streams):
        return None
    streams[metadata.return_hidden_states_index] = metadata.hidden_states_argument_name
    if text is not None:
        streams[text] = metadata.encoder_hidden_states_argument_name
    return tuple(streams)
