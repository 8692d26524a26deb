"""LoRAs with caching on (peft, as diffusers loads them): after wrap equals before wrap, exactly.

Serving loads LoRAs per request into a wrapped model. peft puts a LoRA layer in the place of each
target module, holding the original as ``base_layer``; where that module is a cached component (a
FLUX single block's ``proj_out``) or feeds one, the gate must move to the LoRA layer, so a reused
value includes the LoRA's contribution.
"""

from __future__ import annotations

import pytest
import torch

import smoothcache
from helpers import assert_pristine
from smoothcache.reference.zoo import pipelines

pytest.importorskip("peft")

STEPS = 6
#: Reuses at steps 1 and 3: a value kept before a LoRA is loaded would show at once.
TABLE = [1, 0, 1, 0, 1, 1]
#: Targets in both block kinds: the single blocks' cached ``proj_out`` and its follower ``proj_mlp``,
#: and projections inside the cached attention and feed-forward modules.
TARGETS = ["proj_out", "proj_mlp", "to_q", "to_v", "ff.net.2"]


def flux():
    pipe = pipelines.BUILDERS["flux"](0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def add_lora(pipe, name: str = "style", seed: int = 5) -> None:
    from peft import LoraConfig

    torch.manual_seed(seed)  # init_lora_weights=False draws both LoRA matrices: the LoRA changes the output
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=TARGETS, init_lora_weights=False), adapter_name=name)


def schedule_for(pipe) -> smoothcache.Schedule:
    with smoothcache.wrap(pipe) as handle:
        keys = [c.key for c in handle.components]
    return smoothcache.Schedule(dict.fromkeys(keys, TABLE))


def generate(pipe) -> torch.Tensor:
    return pipelines.call("flux", pipe, seed=1, steps=STEPS)


@pytest.fixture(scope="module")
def loaded_before():
    """The output with the LoRA loaded before wrap (the gates then sit on the LoRA layers), and without it."""
    plain = flux()
    schedule = schedule_for(plain)
    with smoothcache.wrap(plain, schedule=schedule):
        without = generate(plain)
    pipe = flux()
    add_lora(pipe)
    with smoothcache.wrap(pipe, schedule=schedule) as handle:
        with_lora = generate(pipe)
        assert handle.stats()["reused"] > 0
    assert not torch.equal(with_lora, without)
    return schedule, with_lora, without


def test_a_lora_added_after_wrap_equals_it_added_before(loaded_before):
    schedule, expected, without = loaded_before
    pipe = flux()
    with smoothcache.wrap(pipe, schedule=schedule):
        assert torch.equal(generate(pipe), without)
        add_lora(pipe)  # between two generations, as a server loads a request's LoRA
        assert torch.equal(generate(pipe), expected)
        proj_out = pipe.transformer.single_transformer_blocks[0].proj_out
        assert type(proj_out).__name__ == "Linear" and hasattr(proj_out, "base_layer")  # peft's layer
        assert "forward" in vars(proj_out) and "forward" not in vars(proj_out.base_layer)  # the gate moved
    assert_pristine(pipe.transformer)


def test_a_lora_loaded_through_the_pipeline_after_wrap_equals_it_loaded_before(loaded_before, tmp_path):
    from peft.utils import get_peft_model_state_dict

    schedule, expected, _ = loaded_before
    source = flux()
    add_lora(source)
    type(source).save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(source.transformer, adapter_name="style"))
    pipe = flux()
    with smoothcache.wrap(pipe, schedule=schedule):
        generate(pipe)
        pipe.load_lora_weights(tmp_path, adapter_name="style")
        assert torch.equal(generate(pipe), expected)


def test_unloading_a_lora_after_wrap_moves_the_gates_back(loaded_before):
    schedule, expected, without = loaded_before
    pipe = flux()
    add_lora(pipe)
    with smoothcache.wrap(pipe, schedule=schedule):
        assert torch.equal(generate(pipe), expected)
        pipe.transformer.delete_adapters("style")  # peft puts the original modules back in place
        assert torch.equal(generate(pipe), without)
    assert_pristine(pipe.transformer)


def test_fusing_a_lora_after_wrap_is_exact(loaded_before):
    schedule, _, _ = loaded_before
    fused_before = flux()
    add_lora(fused_before)
    fused_before.fuse_lora()
    with smoothcache.wrap(fused_before, schedule=schedule):
        expected = generate(fused_before)
    pipe = flux()
    add_lora(pipe)
    with smoothcache.wrap(pipe, schedule=schedule):
        generate(pipe)
        pipe.fuse_lora()
        assert torch.equal(generate(pipe), expected)
