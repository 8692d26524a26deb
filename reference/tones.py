"""Tones: a small, really trained Stable Audio DiT on a synthetic, seeded audio data set.

Random-weight models make every caching schedule look equally good or bad; this one has learnt
something (four classes of 8 kHz sounds, classifier-free guided), so the error that caching adds shows
up in the audio. The DiT works on the waveform itself cut into frames of ``FRAME`` samples (no VAE) and
is sampled with ``CosineDPMSolverMultistepScheduler`` exactly as ``StableAudioPipeline`` does.
Weights and scheduler config: ``reference/weights/tones-dit/``; class embeddings:
``reference/weights/tones-conditioning.safetensors``; training: ``scripts/train_tones_dit.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

#: The sound classes, in label order.
CLASSES = ("tone", "chord", "chirp", "hit")
SAMPLE_RATE = 8000
#: Samples per waveform (0.256 s).
SAMPLES = 2048
#: Samples per DiT frame: the model sees ``[N, FRAME, SAMPLES // FRAME]``.
FRAME = 32
#: Classifier-free guidance scale that gave the best class accuracy at 20 steps (model card).
GUIDANCE = 3.0

WEIGHTS = Path(__file__).resolve().parent / "weights"
MODEL_DIR = WEIGHTS / "tones-dit"
CONDITIONING_FILE = WEIGHTS / "tones-conditioning.safetensors"


def tones_dataset(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` waveforms ``[count, 1, SAMPLES]`` in [-1, 1] and their labels ``[count]``.

    Labels cycle through ``CLASSES`` (balanced for any multiple of four). Every random parameter comes
    from one generator seeded with ``seed`` and is drawn for all classes, so a waveform depends only on
    ``(seed, index, count)`` and the set is identical on every machine.
      tone:  one sine, 200-1200 Hz; chord: a major triad (1, 5/4, 3/2) on a 150-400 Hz root;
      chirp: an exponential sweep over a factor 2-4, up or down from 200-600 Hz;
      hit:   a white-noise burst decaying in 10-40 ms, starting in the first half.
    Tones, chords and chirps get a 5-50 ms attack and a 20-100 ms release.
    """
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, columns: int = 1) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, columns, generator=generator, dtype=torch.float64)

    def log_uniform(low: float, high: float) -> torch.Tensor:
        return uniform(math.log(low), math.log(high)).exp()

    labels = torch.arange(count) % len(CLASSES)
    duration = SAMPLES / SAMPLE_RATE
    t = torch.arange(SAMPLES, dtype=torch.float64)[None] / SAMPLE_RATE
    amplitude = uniform(0.4, 0.9)
    attack, release = uniform(0.005, 0.05), uniform(0.02, 0.1)
    envelope = (t / attack).clamp(max=1) * ((duration - t) / release).clamp(max=1)
    phases = uniform(0, 2 * math.pi, 3)

    tone = torch.sin(2 * math.pi * log_uniform(200, 1200) * t + phases[:, :1])

    root = log_uniform(150, 400)
    chord = sum(torch.sin(2 * math.pi * root * ratio * t + phases[:, i : i + 1]) for i, ratio in enumerate((1.0, 1.25, 1.5))) / 3

    low, factor, up = log_uniform(200, 600), uniform(2, 4), uniform(0, 1) < 0.5
    start = torch.where(up, low, low * factor)
    rate = torch.where(up, factor, 1 / factor).log() / duration
    chirp = torch.sin(2 * math.pi * start * torch.expm1(rate * t) / rate + phases[:, :1])

    onset, decay = uniform(0, duration / 2), uniform(0.01, 0.04)
    burst = torch.where(t >= onset, torch.exp(-(t - onset) / decay), torch.zeros(()))
    noise = torch.randn(count, SAMPLES, generator=generator, dtype=torch.float64)
    hit = (0.5 * noise * burst).clamp(-1, 1)

    shaped = torch.stack([tone * envelope, chord * envelope, chirp * envelope, hit], dim=1)
    audio = amplitude * shaped[torch.arange(count), labels]
    return audio.float().unsqueeze(1), labels


def to_frames(audio: torch.Tensor) -> torch.Tensor:
    """``[N, 1, SAMPLES]`` waveforms to the DiT's ``[N, FRAME, SAMPLES // FRAME]`` (consecutive samples
    of a frame become its channels)."""
    return audio.reshape(audio.shape[0], -1, FRAME).transpose(1, 2)


def from_frames(frames: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_frames``."""
    return frames.transpose(1, 2).reshape(frames.shape[0], 1, -1)


def load_tones_dit():
    """The trained ``StableAudioDiTModel`` (eval mode, CPU, float32)."""
    from diffusers import StableAudioDiTModel

    return StableAudioDiTModel.from_pretrained(MODEL_DIR).eval()


def tones_scheduler():
    """The ``CosineDPMSolverMultistepScheduler`` the model was trained for (sigmas for this data scale)."""
    from diffusers import CosineDPMSolverMultistepScheduler

    return CosineDPMSolverMultistepScheduler.from_pretrained(MODEL_DIR)


def tones_conditioning() -> tuple[torch.Tensor, torch.Tensor]:
    """The learnt class embeddings ``[len(CLASSES), D]`` and global vector ``[Dg]``.

    The unconditional embedding is zeros, as ``StableAudioPipeline`` builds its negative embeddings."""
    from safetensors.torch import load_file

    tensors = load_file(CONDITIONING_FILE)
    return tensors["class_embeddings"], tensors["global_embedding"]


def sample_tones(model, labels: torch.Tensor | Sequence[int], steps: int, seed: int = 0, guidance: float = GUIDANCE) -> torch.Tensor:
    """Generate one waveform ``[N, 1, SAMPLES]`` in [-1, 1] per label.

    The loop is ``StableAudioPipeline``'s (``pipelines.denoise_stable_audio``), with the generator
    that drew the initial noise also seeding the SDE noise.
    """
    from .pipelines import denoise_stable_audio

    labels = torch.as_tensor(labels, dtype=torch.long)
    device, dtype = model.device, model.dtype
    classes, global_vector = tones_conditioning()
    cond = classes[labels].unsqueeze(1)
    encoder_hidden_states = torch.cat([torch.zeros_like(cond), cond]).to(device, dtype)
    global_hidden_states = global_vector.expand(2 * len(labels), 1, -1).to(device, dtype)

    scheduler = tones_scheduler()
    scheduler.set_timesteps(steps, device=device)
    generator = torch.Generator().manual_seed(seed)
    shape = (len(labels), model.config.in_channels, model.config.sample_size)
    latents = (torch.randn(shape, generator=generator) * scheduler.init_noise_sigma).to(device, dtype)
    latents = denoise_stable_audio(model, scheduler, latents, encoder_hidden_states, global_hidden_states, guidance, generator)
    return from_frames(latents.float().cpu()).clamp(-1, 1)
