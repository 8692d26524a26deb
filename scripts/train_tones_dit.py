"""Train the tones StableAudioDiTModel (``smoothcache.reference.tones``) and measure its samples.

    flock /tmp/smoothcache-train.lock python scripts/train_tones_dit.py            # train, save, evaluate
    flock /tmp/smoothcache-train.lock python scripts/train_tones_dit.py --evaluate-only

Training is EDM-style for ``CosineDPMSolverMultistepScheduler`` with ``prediction_type="v_prediction"``:
``denoised = c_skip * x + c_out * F(c_in * x, atan(sigma) * 2 / pi)`` should equal the clean frames, so
``F`` regresses ``(x0 - c_skip * x) / c_out`` (unit variance at every sigma; the EDM weighting makes
this the plain MSE). log(sigma) is normal (EDM's choice, centred a little under sigma_data, where the
waveform takes shape), clipped to the scheduler's [sigma_min, sigma_max]. Every batch is fresh data from ``tones_dataset`` with a
step-dependent seed; the class embedding is zeroed for 10 % of the batch (classifier-free guidance).
Weights saved are an EMA of the trained ones. Seeded: the same command gives the same weights on the
same machine and thread count.

Evaluation: a small CNN on log spectrograms, trained on real data only, classifies generated samples;
log-spectral distances compare generated with real spectra of the same class.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from smoothcache.reference.pipelines import stable_audio_rotary_embedding
from smoothcache.reference.tones import (
    CLASSES,
    CONDITIONING_FILE,
    FRAME,
    GUIDANCE,
    MODEL_DIR,
    SAMPLES,
    sample_tones,
    to_frames,
    tones_dataset,
)

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.01, 30.0, 0.3
CONDITIONING_WIDTH = 32
#: Seeds of the data: training batches use TRAIN_SEED + step; the others are disjoint sets.
TRAIN_SEED, VALIDATION_SEED, CLASSIFIER_SEED, TEST_SEED, REFERENCE_SEED = 1_000_000, 1, 2, 3, 4
#: Power floor of the log spectrograms: about 56 dB under a full-scale sine's peak bin.
POWER_FLOOR = 1e-2


def build_model(layers: int, head_dim: int, seed: int):
    from diffusers import StableAudioDiTModel

    torch.manual_seed(seed)
    return StableAudioDiTModel(
        sample_size=SAMPLES // FRAME,
        in_channels=FRAME,
        out_channels=FRAME,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=4,
        num_key_value_attention_heads=2,
        cross_attention_dim=4 * head_dim,
        time_proj_dim=64,
        global_states_input_dim=CONDITIONING_WIDTH,
        cross_attention_input_dim=CONDITIONING_WIDTH,
    )


class Conditioning(nn.Module):
    """Learnt class embeddings (zeros = unconditional) and the global vector of every sample."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.class_embeddings = nn.Parameter(torch.randn(len(CLASSES), CONDITIONING_WIDTH, generator=generator))
        self.global_embedding = nn.Parameter(torch.randn(CONDITIONING_WIDTH, generator=generator))

    def forward(self, labels: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.class_embeddings[labels] * keep[:, None]
        return encoder.unsqueeze(1), self.global_embedding.expand(len(labels), 1, -1)


def edm_loss(
    model,
    conditioning: Conditioning,
    rotary,
    x0: torch.Tensor,
    labels: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    keep: torch.Tensor,
) -> torch.Tensor:
    """MSE of F against its target, with the scheduler's own preconditioning."""
    s = sigma[:, None, None]
    x = x0 + s * noise
    c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
    c_out = -s * SIGMA_DATA / (s**2 + SIGMA_DATA**2).sqrt()
    c_in = 1 / (s**2 + SIGMA_DATA**2).sqrt()
    encoder, global_states = conditioning(labels, keep)
    out = model(
        c_in * x,
        sigma.atan() * 2 / math.pi,
        encoder_hidden_states=encoder,
        global_hidden_states=global_states,
        rotary_embedding=rotary,
        return_dict=False,
    )[0]
    return F.mse_loss(out, (x0 - c_skip * x) / c_out)


def validation_batch(count: int = 128) -> tuple[torch.Tensor, ...]:
    """Fixed data, noise and log-spaced sigmas: a loss comparable across steps and runs."""
    audio, labels = tones_dataset(count, VALIDATION_SEED)
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    sigma = torch.logspace(math.log10(SIGMA_MIN), math.log10(SIGMA_MAX), count)
    noise = torch.randn(count, FRAME, SAMPLES // FRAME, generator=generator)
    return to_frames(audio), labels, sigma, noise, torch.ones(count)


def train(args: argparse.Namespace) -> None:
    from diffusers import CosineDPMSolverMultistepScheduler
    from safetensors.torch import save_file

    # built first: it needs torchsde, and a run should not fail on that after training
    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        sigma_data=SIGMA_DATA,
        sigma_schedule="exponential",
        solver_order=2,
        prediction_type="v_prediction",
        final_sigmas_type="zero",
    )
    device = torch.device(args.device)
    model = build_model(args.layers, args.head_dim, args.seed).to(device).train()
    conditioning = Conditioning(args.seed + 1).to(device)
    ema_model, ema_conditioning = copy.deepcopy(model).eval(), copy.deepcopy(conditioning)
    parameters = list(model.parameters()) + list(conditioning.parameters())
    trained = [p for p in parameters if p.requires_grad]
    ema_parameters = list(ema_model.parameters()) + list(ema_conditioning.parameters())
    optimizer = torch.optim.AdamW(trained, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    warmup = min(200, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * step / args.steps))
    )
    rotary = tuple(part.to(device) for part in stable_audio_rotary_embedding(model))
    generator = torch.Generator().manual_seed(args.seed + 2)
    validation = tuple(value.to(device) for value in validation_batch())
    log_sigma_range = (math.log(SIGMA_MIN), math.log(SIGMA_MAX))
    count = sum(p.numel() for p in model.parameters())
    print(f"model: {count:,} parameters; {args.steps} steps of {args.batch}", flush=True)

    history: dict[str, list] = {"step": [], "loss": [], "validation_step": [], "validation": []}
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(1, args.steps + 1):
        audio, labels = tones_dataset(args.batch, TRAIN_SEED + step)
        log_sigma = (args.log_sigma_mean + args.log_sigma_std * torch.randn(args.batch, generator=generator)).clamp(*log_sigma_range)
        noise = torch.randn(args.batch, FRAME, SAMPLES // FRAME, generator=generator)
        keep = (torch.rand(args.batch, generator=generator) >= 0.1).float()
        batch = (value.to(device) for value in (to_frames(audio), labels, log_sigma.exp(), noise, keep))
        loss = edm_loss(model, conditioning, rotary, *batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        schedule.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, p in zip(ema_parameters, parameters, strict=False):
                ema.lerp_(p, 1 - decay)
        history["step"].append(step)
        history["loss"].append(loss.item())
        if step % args.validate_every == 0 or step == args.steps:
            with torch.no_grad():
                value = edm_loss(ema_model, ema_conditioning, rotary, *validation).item()
            history["validation_step"].append(step)
            history["validation"].append(value)
            recent = sum(history["loss"][-args.validate_every :]) / len(history["loss"][-args.validate_every :])
            print(
                f"step {step:5d}  loss {recent:.4f}  validation (EMA) {value:.4f}  "
                f"{time.perf_counter() - start:7.1f} s wall  {time.process_time() - cpu_start:7.1f} s CPU",
                flush=True,
            )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    # CPU time over the threads is what the run takes on an otherwise idle machine (the cores are shared).
    print(
        f"training wall time: {seconds:.0f} s ({seconds / 60:.1f} min); "
        f"CPU time {cpu_seconds:.0f} s over {torch.get_num_threads()} threads",
        flush=True,
    )

    ema_model, ema_conditioning = ema_model.cpu(), ema_conditioning.cpu()
    ema_model.save_pretrained(MODEL_DIR)
    scheduler.save_config(MODEL_DIR)
    save_file(
        {
            "class_embeddings": ema_conditioning.class_embeddings.detach().contiguous(),
            "global_embedding": ema_conditioning.global_embedding.detach().contiguous(),
        },
        CONDITIONING_FILE,
        metadata={"classes": ",".join(CLASSES)},
    )
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    plot_loss(history, f"{seconds / 60:.1f} min on {where}", args.plot)
    print(
        json.dumps({"seconds": round(seconds), "cpu_seconds": round(cpu_seconds), "final_validation": history["validation"][-1]}),
        flush=True,
    )


def plot_loss(history: dict[str, list], duration: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = 25
    losses = torch.tensor(history["loss"])
    smooth = losses.unfold(0, window, 1).mean(1) if len(losses) >= window else losses
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history["step"], history["loss"], color="0.8", lw=0.6, label="training batch")
    ax.plot(history["step"][len(history["step"]) - len(smooth) :], smooth, lw=1.2, label=f"training, mean of {window}")
    ax.plot(history["validation_step"], history["validation"], "o-", ms=3, label="validation (EMA weights)")
    ax.set(yscale="log", xlabel="step", ylabel="v-prediction MSE", title=f"tones DiT: {duration}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def log_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """``[N, 1, S]`` to dB power spectrograms ``[N, 129, frames]`` (Hann 256, hop 64), floored."""
    spec = torch.stft(audio[:, 0], 256, 64, window=torch.hann_window(256), return_complex=True)
    return 10 * (spec.abs().square() + POWER_FLOOR).log10()


class SpectrogramClassifier(nn.Module):
    """Small CNN with global pooling: invariant enough to pitch and onset to need no hand features."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, len(CLASSES))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        h = self.net(((log_spectrogram(audio) + 20) / 20).unsqueeze(1))
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))


def train_classifier(seed: int) -> SpectrogramClassifier:
    torch.manual_seed(seed)
    audio, labels = tones_dataset(4000, CLASSIFIER_SEED)
    classifier = SpectrogramClassifier()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(400):
        index = torch.randint(len(labels), (64,), generator=generator)
        loss = F.cross_entropy(classifier(audio[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classifier.eval()


def mean_spectrum_db(audio: torch.Tensor) -> torch.Tensor:
    """Time-averaged power spectrum of each waveform, in dB: ``[N, 129]``."""
    spec = torch.stft(audio[:, 0], 256, 64, window=torch.hann_window(256), return_complex=True)
    return 10 * (spec.abs().square().mean(-1) + POWER_FLOOR).log10()


def spectral_distances(audio: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Log-spectral distances (dB) of a set to real audio of its class: between the two sets' mean
    spectra, and each waveform to its nearest real one (mean over the set)."""
    a, r = mean_spectrum_db(audio), mean_spectrum_db(reference)
    average = lambda spectra: 10 * (10 ** (spectra / 10)).mean(0).log10()  # noqa: E731
    set_distance = (average(a) - average(r)).square().mean().sqrt().item()
    nearest = torch.cdist(a, r).amin(1) / math.sqrt(a.shape[1])
    return set_distance, nearest.mean().item()


def evaluate(args: argparse.Namespace) -> None:
    from smoothcache.reference.tones import load_tones_dit

    classifier = train_classifier(args.seed)
    per_class = args.eval_per_class
    test_audio, test_labels = tones_dataset(1000, TEST_SEED)
    reference_audio, reference_labels = tones_dataset(4 * 250, REFERENCE_SEED)
    with torch.no_grad():
        real_accuracy = (classifier(test_audio).argmax(1) == test_labels).float().mean().item()
    print(f"classifier accuracy on held-out real audio: {real_accuracy:.3f}")

    def report(name: str, audio: torch.Tensor, labels: torch.Tensor) -> dict:
        with torch.no_grad():
            predicted = classifier(audio).argmax(1)
        row = {"name": name, "accuracy": (predicted == labels).float().mean().item()}
        for c, label in enumerate(CLASSES):
            mask = labels == c
            lsd, nearest = spectral_distances(audio[mask], reference_audio[reference_labels == c])
            row[label] = {"accuracy": (predicted[mask] == c).float().mean().item(), "lsd": lsd, "nearest_lsd": nearest}
        cells = "  ".join(
            f"{label} {row[label]['accuracy']:.2f}/{row[label]['lsd']:.1f}/{row[label]['nearest_lsd']:.1f}" for label in CLASSES
        )
        print(f"{name:28s} accuracy {row['accuracy']:.3f}  (class acc/LSD dB/nearest LSD dB) {cells}", flush=True)
        return row

    rows = [report("real (held out)", *tones_dataset(4 * per_class, TEST_SEED))]
    model = load_tones_dit()
    labels = torch.arange(4 * per_class) % len(CLASSES)
    for guidance in args.guidances:
        start = time.perf_counter()
        audio = sample_tones(model, labels, 20, seed=args.seed, guidance=guidance)
        rows.append(report(f"20 steps, guidance {guidance:g}", audio, labels))
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    for steps in (50, 20):
        audio = sample_tones(model, labels, steps, seed=args.seed)
        rows.append(report(f"{steps} steps, guidance {GUIDANCE:g}", audio, labels))
        if steps == 50 and args.examples:
            plot_examples(audio, labels, args.examples)
    print(json.dumps(rows))


def plot_examples(audio: torch.Tensor, labels: torch.Tensor, path: Path) -> None:
    """Waveform and spectrogram of the first two samples of each class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, len(CLASSES), figsize=(12, 7))
    for c, label in enumerate(CLASSES):
        for k, index in enumerate((labels == c).nonzero()[:2, 0]):
            axes[2 * k, c].plot(audio[index, 0].numpy(), lw=0.4)
            axes[2 * k, c].set_title(label)
            axes[2 * k + 1, c].imshow(log_spectrogram(audio[index : index + 1])[0].numpy(), origin="lower", aspect="auto")
    fig.tight_layout()
    fig.savefig(path, dpi=70)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--log-sigma-mean", type=float, default=-1.5)
    parser.add_argument("--log-sigma-std", type=float, default=1.2)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validate-every", type=int, default=100)
    parser.add_argument("--plot", type=Path, default=MODEL_DIR.parent / "tones-dit-loss.png")
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--no-evaluate", action="store_true")
    parser.add_argument("--eval-per-class", type=int, default=32)
    parser.add_argument("--guidances", type=float, nargs="*", default=[1.0, 2.0, 3.0, 5.0])
    parser.add_argument("--examples", type=Path, help="PNG of generated examples (50 steps)")
    parser.add_argument("--device", default="cpu", help="training device: cpu, or cuda (not bitwise the CPU weights)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not args.evaluate_only:
        train(args)
    if not args.no_evaluate:
        evaluate(args)


if __name__ == "__main__":
    main()
