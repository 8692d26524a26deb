"""Train Open-Sora v1.2's STDiT3 on moving digits (``reference/weights/moving-digits-stdit3.safetensors``).

Open-Sora v1.2's rectified-flow objective in pixel space: ``t`` drawn uniformly in [0, 1000] (its
``RFlowScheduler(sample_method="uniform")``; ``--timesteps logit-normal`` is the other choice, which
trains the ends of the path too rarely for a short run: sampled frames keep speckles of noise),
``x_t = (1 - t/1000) x0 + (t/1000) noise``, the model regresses
the velocity ``x0 - noise``. The class is a caption of 8 learnt tokens (an entry of the class table;
one token taught the model nothing of the class, see the model card); the model's own
``CaptionEmbedder`` drops it to the null caption 10 % of the time in train mode, for classifier-free
guidance. AdamW with warmup and cosine decay, EMA of the weights; every epoch draws new trajectories.
Seeded, and deterministic on CPU; ``--device cuda`` draws the same data and noise but its attention
backward is not bitwise reproducible. At the end the EMA model is saved, the loss curve plotted, and
generated videos scored with the shared digit classifier at several guidance scales. Run from the
repository root (the defaults are the shipped model's run: 7,300 steps, the count ``--minutes 7`` chose
on one NVIDIA H200, where they took 463 s; about 5 hours on 2 CPU cores):

    python scripts/train_moving_digits.py --device cuda [--steps N | --minutes M] [--checkpoint-every N] \
        [--out reference/weights/moving-digits-stdit3.safetensors]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from smoothcache.reference.digits import NUM_CLASSES, load_digit_classifier
from smoothcache.reference.moving_digits import (
    MODEL_WEIGHTS,
    NUM_TIMESTEPS,
    add_noise,
    centroids,
    class_captions,
    frame_accuracy,
    model_config,
    model_kwargs,
    moving_digits,
    sample_moving_digits,
    save_moving_digits_stdit3,
)
from smoothcache.reference.opensora_v12 import STDiT3

#: Classifier-free guidance scales tried after training by default (moving_digits.DEFAULT_GUIDANCE is the best).
GUIDANCE_SWEEP = (1.0, 2.0, 4.0, 6.0)


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)


def to_device(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``value`` on ``device``; on cuda through pinned memory without waiting, so that the CPU draws the
    next batch while the GPU trains on this one (a pageable copy would wait for the GPU's queue)."""
    if device.type != "cuda":
        return value
    return value.pin_memory().to(device, non_blocking=True)


class Trainee(nn.Module):
    """The STDiT3 and its class table as one module, so that the optimiser and the EMA see both."""

    def __init__(self, model: STDiT3, generator: torch.Generator) -> None:
        super().__init__()
        self.model = model
        # same shape and scale as the null caption y_embedder.y_embedding
        tokens, channels = model.y_embedder.y_embedding.shape
        table = torch.randn(NUM_CLASSES, tokens, channels, generator=generator) / channels**0.5
        self.class_table = nn.Parameter(table)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The velocity. Without ``x_mask``: the sampler's all-True ``x_mask`` gives bitwise the same
        output, and skipping its t=0 modulation branch makes a training step about a quarter faster."""
        y = class_captions(self.class_table, labels)
        # height and width from the CPU: the model reads them as numbers (.item()), which on a GPU would
        # wait at every step for all queued kernels
        on_cpu = {key: model_kwargs(len(labels))[key] for key in ("height", "width")}
        return self.model(x_t, t, y=y, **(model_kwargs(len(labels), x_t.device) | {"x_mask": None} | on_cpu))


def motion(videos: torch.Tensor) -> tuple[float, float]:
    """Mean distance (pixels) the ink centroid travels from the first to the last frame, and per frame."""
    c = centroids(videos)
    total = (c[:, -1] - c[:, 0]).norm(dim=-1).mean().item()
    per_frame = (c[:, 1:] - c[:, :-1]).norm(dim=-1).mean().item()
    return total, per_frame


def plot_loss(losses: list[float], path: Path, window: int = 100) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = torch.tensor(losses)
    smooth = values.unfold(0, window, 1).mean(dim=1) if len(values) >= window else values
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(range(1, len(values) + 1), values, color="0.8", linewidth=0.5, label="batch loss")
    ax.plot(range(len(values) - len(smooth) + 1, len(values) + 1), smooth, color="C0", label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("velocity MSE")
    ax.set_yscale("log")
    ax.set_title("moving-digits STDiT3: rectified-flow training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7300)
    parser.add_argument(
        "--minutes",
        type=float,
        help="train for about this many minutes instead: --steps is fixed at the end of warm-up from the speed over "
        "its second half (the cosine schedule starts after it, so --steps N with the recorded N reproduces the run)",
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--timesteps", choices=("uniform", "logit-normal"), default="uniform")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--caption-channels", type=int, default=32)
    parser.add_argument("--patch", type=int, default=4, help="spatial patch side")
    parser.add_argument("--caption-tokens", type=int, default=8, help="learnt caption tokens per class")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (same data and noise, not bitwise the same weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-per-class", type=int, default=10, help="generated videos per class and guidance scale")
    parser.add_argument("--eval-steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, nargs="+", default=list(GUIDANCE_SWEEP), help="guidance scales to score")
    parser.add_argument("--out", type=Path, default=MODEL_WEIGHTS)
    parser.add_argument("--summary", type=Path, help="also write losses and scores to this JSON file")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="every N steps also save the EMA weights to --out (and the summary so far), so that a run killed "
        "before the end leaves usable weights; 0: only at the end",
    )
    args = parser.parse_args()
    if args.minutes is not None and args.warmup < 20:
        parser.error("--minutes times the second half of warm-up: give --warmup 20 or more")
    if args.summary is not None and args.summary.resolve() == args.out.with_suffix(".json").resolve():
        parser.error(f"--summary {args.summary} would overwrite the model config written beside --out; name another file")

    device = torch.device(args.device)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # also drives the CaptionEmbedder's caption dropout
    # CUDA attention backward has no deterministic kernel everywhere: warn there instead of failing
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    generator = torch.Generator().manual_seed(args.seed)
    config = model_config(args.depth, args.hidden, args.heads, args.caption_channels, args.patch, args.caption_tokens)
    trainee = Trainee(STDiT3(config), generator).to(device).train()
    ema = copy.deepcopy(trainee).eval().requires_grad_(False)
    parameters = sum(p.numel() for p in trainee.parameters())
    print(f"{parameters} parameters", flush=True)

    # fused on cuda: one kernel for the whole update (same algorithm; the CPU keeps the reference one)
    optimizer = torch.optim.AdamW(trainee.parameters(), lr=args.lr, weight_decay=0.0, fused=True if device.type == "cuda" else None)

    def lr_factor(step: int) -> float:
        if step < args.warmup:
            return (step + 1) / args.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - args.warmup) / max(1, args.steps - args.warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    def clock() -> float:
        """Seconds since ``start``, once the device has finished its queued work."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    def save(losses: list[float], seconds: float) -> None:
        """The EMA weights to ``--out``, through a temporary file (a kill while writing keeps the last
        save), with the step count reached."""
        model, class_table = copy.deepcopy(ema).cpu().model, ema.class_table.detach().cpu()
        metadata = {
            "steps": str(args.steps),
            "steps_done": str(len(losses)),
            "batch": str(args.batch),
            "train_seconds": f"{seconds:.0f}",
            "parameters": str(parameters),
            "final_loss": f"{sum(losses[-100:]) / len(losses[-100:]):.4f}",
        }
        partial = args.out.with_name(args.out.stem + ".partial" + args.out.suffix)
        save_moving_digits_stdit3(model, class_table, partial, metadata)
        partial.replace(args.out)
        partial.with_suffix(".json").replace(args.out.with_suffix(".json"))

    def write_summary(losses: list[float], seconds: float, results: dict[float, dict[str, float]]) -> None:
        if args.summary is not None:
            summary = {
                "steps": args.steps,
                "steps_done": len(losses),
                "train_seconds": seconds,
                "steps_per_second": rate,
                "parameters": parameters,
                "losses": losses,
                "eval": results,
            }
            args.summary.write_text(json.dumps(summary | {"args": {k: str(v) for k, v in vars(args).items()}}))

    losses: list[float] = []
    pending: list[torch.Tensor] = []  # losses still on the device: read every 100 steps, not every step
    rate: float | None = None
    epoch = 0
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    start = time.perf_counter()
    half_warmup = 0.0
    step = 0
    while step < args.steps:
        if not batches:
            videos, labels = moving_digits("train", seed=args.seed * 100_000 + epoch)
            order = torch.randperm(len(labels), generator=generator)
            batches = [(videos[i], labels[i]) for i in order.split(args.batch) if len(i) == args.batch]
            epoch += 1
        x0, labels = batches.pop()
        noise = torch.randn(x0.shape, generator=generator)
        if args.timesteps == "uniform":
            t = torch.rand(len(x0), generator=generator) * NUM_TIMESTEPS
        else:  # RFlowScheduler's LogisticNormal(0, 1) sample is the sigmoid of a standard normal
            t = torch.sigmoid(torch.randn(len(x0), generator=generator)) * NUM_TIMESTEPS
        x0, labels, noise, t = (to_device(value, device) for value in (x0, labels, noise, t))
        velocity = trainee(add_noise(x0, noise, t), t, labels)
        loss = F.mse_loss(velocity, x0 - noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        ema_update(ema, trainee, min(args.ema, (1 + step) / (10 + step)))
        pending.append(loss.detach())
        step += 1
        if step == args.warmup // 2:
            half_warmup = clock()
        if step == args.warmup:
            rate = (args.warmup - args.warmup // 2) / (clock() - half_warmup)
            if args.minutes is not None:
                # the cosine factor of this step is 1 whatever the length; every later one reads the new --steps
                args.steps = max(args.warmup + 100, int(args.warmup + rate * (60 * args.minutes - clock())) // 100 * 100)
                print(f"{rate:.1f} steps/s: training for {args.steps} steps", flush=True)
        report = step % 100 == 0 or step == args.steps
        checkpoint = args.checkpoint_every > 0 and step % args.checkpoint_every == 0 and step < args.steps
        if report or checkpoint:
            losses += torch.stack(pending).tolist()
            pending.clear()
        if report:
            recent = sum(losses[-100:]) / len(losses[-100:])
            print(f"step {step:5d}  epoch {epoch:3d}  loss {recent:.4f}  {time.perf_counter() - start:.1f}s", flush=True)
        if checkpoint:
            save(losses, clock())
            write_summary(losses, clock(), {})
    train_seconds = clock()

    size = sum(v.numel() * v.element_size() for v in ema.state_dict().values())
    save(losses, train_seconds)
    write_summary(losses, train_seconds, {})
    plot_loss(losses, args.out.with_name(args.out.stem + "-loss.png"))
    print(f"saved {args.out} ({parameters} parameters, {size / 1e6:.2f} MB) after {train_seconds:.0f}s of training", flush=True)

    classifier = load_digit_classifier()
    model, class_table = ema.model, ema.class_table.detach()
    labels = torch.arange(NUM_CLASSES).repeat_interleave(args.eval_per_class)
    real, _ = moving_digits("test", seed=1)
    real_total, real_step = motion((real + 1) / 2)
    print(f"real test videos: centroid moves {real_total:.2f} px first->last, {real_step:.2f} px per frame")
    results = {}
    for guidance in args.guidance:
        begin = time.perf_counter()
        videos = sample_moving_digits(model, class_table, labels, steps=args.eval_steps, seed=args.seed, guidance=guidance)
        per_frame, per_video = frame_accuracy(videos, labels, classifier)
        total, per_step = motion(videos)
        results[guidance] = {"frame_accuracy": per_frame, "video_accuracy": per_video, "motion_px": total, "motion_per_frame_px": per_step}
        print(
            f"guidance {guidance:.1f}: frame accuracy {per_frame:.3f}  video (majority) {per_video:.3f}  "
            f"centroid moves {total:.2f} px ({per_step:.2f}/frame)  {time.perf_counter() - begin:.0f}s",
            flush=True,
        )
    write_summary(losses, train_seconds, results)


if __name__ == "__main__":
    main()
