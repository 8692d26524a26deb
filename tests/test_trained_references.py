"""The FLUX and Wan references trained here (``flux_digits``, ``wan_digits``): their data, their offline
text path, and, once their weights are exported, the shipped pipelines loaded through
``FluxPipeline`` / ``WanPipeline.from_pretrained`` and scored by their checkers.

The data and plumbing tests always run (seconds, untrained parts). The tests of shipped weights skip
until ``scripts/train_flux_digits.py finish`` / ``scripts/train_wan_digits.py finish`` has written them.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from smoothcache.reference import coloured_digits, flux_digits, wan_digits

#: Share of a prompt's attributes the checker must read back from a few uncached samples at the
#: default sampler (the cards give the full numbers on 100-200 samples).
FLUX_ATTRIBUTE_THRESHOLD = 0.75
WAN_ATTRIBUTE_THRESHOLD = 0.75
#: The checkers on held-out rendered scenes, every attribute right.
CHECKER_THRESHOLD = 0.9


def quiet(load, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(*args)


def attribute_mean(accuracy: dict[str, float]) -> float:
    return sum(value for key, value in accuracy.items() if key != "all") / (len(accuracy) - 1)


# --- data and text path (always) --------------------------------------------------------------------------


def test_every_prompt_word_is_one_token_and_prompts_fit():
    t5, clip = coloured_digits.t5_tokenizer(), coloured_digits.clip_tokenizer()
    for word in coloured_digits.WORDS:
        assert len(t5.tokenize(word)) == 1 and len(clip.tokenize(word)) == 1, word
    generator = torch.Generator().manual_seed(0)
    prompts = flux_digits.scene_prompts(flux_digits.sample_scenes(64, generator))
    prompts += wan_digits.scene_prompts(wan_digits.sample_scenes(64, generator))
    longest = max(len(t5(prompt).input_ids) for prompt in prompts)
    assert longest <= min(flux_digits.MAX_SEQUENCE_LENGTH, wan_digits.MAX_SEQUENCE_LENGTH)


def test_scenes_are_seeded_and_match_their_prompts():
    first = flux_digits.sample_scenes(8, torch.Generator().manual_seed(3))
    again = flux_digits.sample_scenes(8, torch.Generator().manual_seed(3))
    assert torch.equal(flux_digits.render_scenes(first), flux_digits.render_scenes(again))
    images = flux_digits.render_scenes(first)
    assert images.shape == (8, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    for prompt, relation in zip(flux_digits.scene_prompts(first), first.relation.tolist(), strict=True):
        assert f" {flux_digits.RELATIONS[relation]} a " in prompt
    clips = wan_digits.render_scenes(wan_digits.sample_scenes(6, torch.Generator().manual_seed(3)))
    assert clips.shape == (6, 3, wan_digits.FRAMES, 32, 32)


def test_rendered_clips_move_the_named_way():
    scenes = wan_digits.sample_scenes(32, torch.Generator().manual_seed(5))
    travel = wan_digits.travel_along_direction(wan_digits.render_scenes(scenes), scenes)
    assert travel.mean() == pytest.approx(wan_digits.FRAMES - 1, abs=1.0)


def linear_probe_accuracy(features: torch.Tensor, labels: torch.Tensor, classes: int, train: int) -> float:
    """Held-out accuracy of a least-squares linear read-out of ``labels`` from ``features``."""
    inputs = torch.cat([features, torch.ones(len(features), 1)], dim=1)
    weights = torch.linalg.lstsq(inputs[:train], torch.nn.functional.one_hot(labels[:train], classes).float()).solution
    return ((inputs[train:] @ weights).argmax(dim=1) == labels[train:]).float().mean().item()


def test_word_order_survives_the_frozen_text_encoder():
    """Which colour goes with which digit is written in the digit's own T5 vector: a linear read-out
    finds the first digit's colour there (it is random, 0.2, without the scaled position biases)."""
    tokenizer = coloured_digits.t5_tokenizer()
    encoder = flux_digits.text_encoder_2(len(tokenizer))
    scenes = flux_digits.sample_scenes(1500, torch.Generator().manual_seed(0))
    ids = tokenizer(flux_digits.scene_prompts(scenes), padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        first_digit = encoder(ids).last_hidden_state[:, 3]  # "a {size} {colour} {digit} ..."
    assert linear_probe_accuracy(first_digit, scenes.colours[:, 0], len(coloured_digits.COLOUR_NAMES), train=1200) >= 0.9


@pytest.mark.parametrize("reference", [flux_digits, wan_digits], ids=["flux", "wan"])
def test_untrained_pipeline_round_trips_and_generates(tmp_path, reference):
    """The real pipeline of the reference's parts (untrained transformer and autoencoder) saves, loads
    with ``from_pretrained`` and generates outputs of the reference's shape, in two steps."""
    pipe = reference.build_pipeline(seed=0)
    pipe.save_pretrained(tmp_path)
    loaded = quiet(reference.load_pipeline, tmp_path)
    prompts = (
        ["a large red 3 above a small blue 7 on a striped background"]
        if reference is flux_digits
        else ["a red 3 moving left on a gray background"]
    )
    output = reference.generate(loaded, prompts, steps=2)
    expected = (1, 3, 32, 32) if reference is flux_digits else (1, 3, wan_digits.FRAMES, 32, 32)
    assert output.shape == expected and torch.isfinite(output).all()


# --- the shipped weights (once exported) -------------------------------------------------------------------


def shipped(path):
    if not path.exists():
        pytest.skip(f"{path.name} not exported yet: see scripts/train_*_digits.py finish")
    return path


@pytest.fixture(scope="module")
def flux_pipe():
    return quiet(flux_digits.load_pipeline, shipped(flux_digits.PIPELINE_DIR))


@pytest.fixture(scope="module")
def wan_pipe():
    return quiet(wan_digits.load_pipeline, shipped(wan_digits.PIPELINE_DIR))


def test_flux_checker_reads_held_out_scenes():
    checker = flux_digits.load_checker(shipped(flux_digits.CHECKER_WEIGHTS))
    scenes = flux_digits.sample_scenes(200, torch.Generator().manual_seed(77), split="test")
    accuracy = flux_digits.scene_accuracy(flux_digits.render_scenes(scenes, split="test"), scenes, checker)
    assert accuracy["all"] >= CHECKER_THRESHOLD, accuracy


def test_wan_checker_reads_held_out_clips():
    checker = wan_digits.load_checker(shipped(wan_digits.CHECKER_WEIGHTS))
    scenes = wan_digits.sample_scenes(100, torch.Generator().manual_seed(77), split="test")
    accuracy = wan_digits.clip_accuracy(wan_digits.render_scenes(scenes, split="test"), scenes, checker)
    assert accuracy["all"] >= CHECKER_THRESHOLD, accuracy


def test_shipped_flux_pipeline_draws_its_prompts(flux_pipe):
    assert type(flux_pipe).__name__ == "FluxPipeline"
    scenes = flux_digits.sample_scenes(12, torch.Generator().manual_seed(99), split="test")
    images = flux_digits.generate(flux_pipe, flux_digits.scene_prompts(scenes), seed=99)
    assert images.shape == (12, 3, 32, 32)
    accuracy = flux_digits.scene_accuracy(images, scenes, flux_digits.load_checker(shipped(flux_digits.CHECKER_WEIGHTS)))
    assert attribute_mean(accuracy) >= FLUX_ATTRIBUTE_THRESHOLD, accuracy


def test_shipped_wan_pipeline_draws_its_prompts(wan_pipe):
    assert type(wan_pipe).__name__ == "WanPipeline"
    scenes = wan_digits.sample_scenes(8, torch.Generator().manual_seed(99), split="test")
    clips = wan_digits.generate(wan_pipe, wan_digits.scene_prompts(scenes), seed=99)
    assert clips.shape == (8, 3, wan_digits.FRAMES, 32, 32)
    accuracy = wan_digits.clip_accuracy(clips, scenes, wan_digits.load_checker(shipped(wan_digits.CHECKER_WEIGHTS)))
    assert attribute_mean(accuracy) >= WAN_ATTRIBUTE_THRESHOLD, accuracy
