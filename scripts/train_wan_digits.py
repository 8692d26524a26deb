"""Train the Wan-architecture reference (``reference/weights/wan-digits/``) on moving, colour-changing
digit clips, in stages:

    vae          AutoencoderKLWan on rendered clips (L1 + a small KL), then its per-channel latent mean and std
    checker      the ClipChecker on rendered clips and their autoencoder round trips
    latents      the training set: clips from the training glyphs, encoded once (fp16)
    transformer  WanTransformer3DModel by flow matching on those latents, prompts through WanPipeline
    finish       export the pipeline folder, score it with the checker, plot the loss, write the card
    all          every stage in order, each skipped when its output exists (the transformer resumes)

Same conventions as ``train_flux_digits.py``: outputs in ``--work-dir`` (resumable), the shipped files
under ``reference/weights``, per-step seeded generators, one thread by default. Run from the repository
root:

    nohup setsid nice -n 19 .venv/bin/python scripts/train_wan_digits.py all --work-dir /work/train-runs/wan-digits \
        > /work/train-logs/wan-digits.log 2>&1 &
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path

import torch
from reference_training import (
    Clock,
    LossLog,
    cosine_factor,
    ema_decay,
    load_checkpoint,
    plot_losses,
    psnr,
    read_loss_log,
    save_checkpoint,
    save_grid,
    set_learning_rate,
    step_generator,
    update_ema,
)
from torch import nn
from torch.nn import functional as F

from smoothcache.reference import coloured_digits as base
from smoothcache.reference import wan_digits as ref

LATENT_FRAMES = (ref.FRAMES - 1) // 4 + 1
LATENT_SIDE = ref.SIDE // 4
LATENT_CHANNELS = 16


def rendered_batch(count: int, generator: torch.Generator, split: str = "train") -> tuple[torch.Tensor, ref.VideoScenes]:
    scenes = ref.sample_scenes(count, generator, split)
    return ref.render_scenes(scenes, split), scenes


def frames_grid(clips: torch.Tensor) -> torch.Tensor:
    """``[N, 3, F, H, W]`` clips as ``[N * F, 3, H, W]`` frames, one clip per row of a grid."""
    return clips.transpose(1, 2).reshape(-1, 3, ref.SIDE, ref.SIDE)


# --- stage: autoencoder -------------------------------------------------------------------------------


def train_vae(args: argparse.Namespace) -> None:
    from diffusers import AutoencoderKLWan

    out_dir = args.work_dir / "vae"
    if (out_dir / "config.json").exists():
        print(f"vae: {out_dir} exists, skipped", flush=True)
        return
    checkpoint = args.work_dir / "vae-checkpoint.safetensors"
    torch.manual_seed(args.seed)
    vae = AutoencoderKLWan(**ref.vae_config()).train()
    # Start the posterior narrow (std e^-3, about where a trained one ends): from the default std of 1
    # the sampled latents are mostly noise at first (std still 0.86 at step 250 in a run that did not
    # start so, where the 2D autoencoder's was 0.03). The learning rate matters more: at 1e-3 this
    # autoencoder stalls at the mean clip (it could not even overfit four frames), at 1e-4 it learns.
    with torch.no_grad():
        vae.quant_conv.bias[LATENT_CHANNELS:] = -6.0
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    start, earlier = 0, 0.0
    if checkpoint.exists():
        meta = load_checkpoint(checkpoint, {"vae": vae}, optimizer)
        start, earlier = meta["step"], meta["seconds"]
        print(f"vae: resumed at step {start}", flush=True)
    log = LossLog(args.work_dir / "vae-loss.tsv", start)
    clock = Clock(earlier)
    print(f"vae: {sum(p.numel() for p in vae.parameters())} parameters, {args.vae_steps} steps of {args.vae_batch}", flush=True)
    window: list[float] = []
    for step in range(start, args.vae_steps):
        clips, _ = rendered_batch(args.vae_batch, step_generator(args.seed + 1, step))
        x = base.to_model_range(clips)
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=step_generator(args.seed + 2, step))).sample
        kl = posterior.kl().mean() / (LATENT_CHANNELS * LATENT_FRAMES * LATENT_SIDE**2)
        loss = F.l1_loss(reconstruction, x) + args.vae_kl * kl
        lr = args.vae_lr * cosine_factor(step, args.vae_steps, warmup=200)
        set_learning_rate(optimizer, lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        window.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == args.vae_steps:
            log.append(step + 1, sum(window) / len(window), lr, clock.seconds())
            print(f"vae step {step + 1:5d}  loss {sum(window) / len(window):.4f}  {clock.seconds():.0f}s", flush=True)
            window = []
        if (step + 1) % 250 == 0 and step + 1 < args.vae_steps:
            save_checkpoint(checkpoint, step + 1, {"vae": vae}, optimizer, {"seconds": clock.seconds()})

    vae.eval()
    test_clips, _ = rendered_batch(256, torch.Generator().manual_seed(args.seed + 3), split="test")
    with torch.no_grad():
        latents = torch.cat([vae.encode(base.to_model_range(chunk)).latent_dist.mode() for chunk in test_clips.split(32)])
        decoded = torch.cat([vae.decode(chunk).sample for chunk in latents.split(32)])
    mean = latents.mean(dim=(0, 2, 3, 4))
    std = latents.std(dim=(0, 2, 3, 4))
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    quality = psnr(base.from_model_range(decoded), test_clips)
    vae.save_pretrained(out_dir, safe_serialization=True)
    summary = {"steps": args.vae_steps, "batch": args.vae_batch, "seconds": clock.seconds(), "test_psnr_db": quality}
    (args.work_dir / "vae-summary.json").write_text(json.dumps(summary | {"mean": mean.tolist(), "std": std.tolist()}, indent=2))
    save_grid(
        args.work_dir / "vae-reconstructions.png",
        frames_grid(torch.cat([test_clips[:4], base.from_model_range(decoded[:4])])),
        columns=ref.FRAMES,
    )
    print(f"vae: saved {out_dir}, test reconstruction PSNR {quality:.2f} dB", flush=True)


def load_vae(args: argparse.Namespace):
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan.from_pretrained(args.work_dir / "vae").eval().requires_grad_(False)


def round_trip(vae, clips: torch.Tensor) -> torch.Tensor:
    """Clips in [0, 1] through the autoencoder (encode to the mode, decode), in [0, 1]."""
    with torch.no_grad():
        decoded = vae.decode(vae.encode(base.to_model_range(clips)).latent_dist.mode()).sample
    return base.from_model_range(decoded)


# --- stage: checker -------------------------------------------------------------------------------------


def train_checker(args: argparse.Namespace) -> None:
    from safetensors.torch import save_file

    if args.checker_out.exists():
        print(f"checker: {args.checker_out} exists, skipped", flush=True)
        return
    vae = load_vae(args)
    torch.manual_seed(args.seed + 10)
    checker = ref.ClipChecker().train()
    optimizer = torch.optim.AdamW(checker.parameters(), lr=args.checker_lr, weight_decay=1e-4)
    clock = Clock()
    for step in range(args.checker_steps):
        generator = step_generator(args.seed + 11, step)
        clips, scenes = rendered_batch(args.checker_batch, generator)
        # a quarter of each batch through the autoencoder, as generated clips come out of its decoder
        through = args.checker_batch // 4
        clips = torch.cat([clips[:-through], round_trip(vae, clips[-through:])])
        noise_level = 0.03 * torch.rand(len(clips), 1, 1, 1, 1, generator=generator)
        clips = (clips + noise_level * torch.randn(clips.shape, generator=generator)).clamp(0, 1)
        set_learning_rate(optimizer, args.checker_lr * cosine_factor(step, args.checker_steps, warmup=100, floor=0.02))
        logits = checker(clips)
        targets = ref.checker_targets(scenes)
        loss = sum(F.cross_entropy(logits[name], targets[name]) for name in ref.CHECKER_HEADS) / len(ref.CHECKER_HEADS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 100 == 0:
            print(f"checker step {step + 1:5d}  loss {loss.item():.4f}  {clock.seconds():.0f}s", flush=True)
    checker.eval()
    test_clips, test_scenes = rendered_batch(1000, torch.Generator().manual_seed(args.seed + 12), split="test")
    clean = ref.clip_accuracy(test_clips, test_scenes, checker)
    through_vae = ref.clip_accuracy(torch.cat([round_trip(vae, chunk) for chunk in test_clips.split(50)]), test_scenes, checker)
    args.checker_out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in checker.state_dict().items()}, args.checker_out)
    summary = {
        "steps": args.checker_steps,
        "batch": args.checker_batch,
        "seconds": clock.seconds(),
        "test_clean": clean,
        "test_vae": through_vae,
    }
    (args.work_dir / "checker-summary.json").write_text(json.dumps(summary, indent=2))
    print(f"checker: saved {args.checker_out}; held-out clips {clean}; through the autoencoder {through_vae}", flush=True)


# --- stage: latents -------------------------------------------------------------------------------------


def encode_training_set(args: argparse.Namespace) -> None:
    from safetensors.torch import save_file

    path = args.work_dir / "latents.safetensors"
    if path.exists():
        print(f"latents: {path} exists, skipped", flush=True)
        return
    vae = load_vae(args)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    chunks, scene_chunks = [], []
    clock = Clock()
    for index in range(math.ceil(args.latent_count / 500)):
        clips, scenes = rendered_batch(500, torch.Generator().manual_seed(args.seed * 7919 + 100_000 + index))
        with torch.no_grad():
            latents = torch.cat([vae.encode(base.to_model_range(chunk)).latent_dist.mode() for chunk in clips.split(50)])
        chunks.append(((latents - mean) / std).half())
        scene_chunks.append(scenes)
        if (index + 1) % 10 == 0:
            print(f"latents: {500 * (index + 1)} encoded, {clock.seconds():.0f}s", flush=True)
    tensors = {"latents": torch.cat(chunks)[: args.latent_count].contiguous()}
    for field, value in ref.VideoScenes.concatenate(scene_chunks)[: args.latent_count].tensors("scene.").items():
        tensors[field] = value.contiguous()
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, partial)
    partial.replace(path)
    print(f"latents: saved {path} ({tensors['latents'].shape[0]} clips, {clock.seconds():.0f}s)", flush=True)


# --- stage: transformer ---------------------------------------------------------------------------------


def parts_pipeline(args: argparse.Namespace):
    """The pipeline of fixed parts (text encoder, tokenizer, scheduler, trained autoencoder) saved once
    into the work directory and always loaded from there: training, previews and the export share them."""
    from diffusers import WanPipeline

    parts = args.work_dir / "parts"
    if not (parts / "model_index.json").exists():
        ref.build_pipeline(vae=load_vae(args), seed=args.seed).save_pretrained(parts, safe_serialization=True)
    pipe = WanPipeline.from_pretrained(parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def preview_scenes(count: int = 16) -> ref.VideoScenes:
    """Fixed held-out clips (test glyphs) whose prompts the previews use."""
    return ref.sample_scenes(count, torch.Generator().manual_seed(4242), split="test")


def sigmas_for(count: int, generator: torch.Generator) -> torch.Tensor:
    """Training noise levels: half uniform, half uniform then shifted by the sampler's flow shift (3)."""
    u = torch.rand(count, generator=generator)
    shifted = ref.FLOW_SHIFT * u / (1 + (ref.FLOW_SHIFT - 1) * u)
    use_shifted = torch.rand(count, generator=generator) < 0.5
    return torch.where(use_shifted, shifted, u).clamp(1e-4, 1.0)


def train_transformer(args: argparse.Namespace) -> None:
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file

    checkpoint = args.work_dir / "transformer-checkpoint.safetensors"
    if (args.work_dir / "transformer-done.json").exists():
        print("transformer: training finished, skipped", flush=True)
        return
    pipe = parts_pipeline(args)
    data = load_file(args.work_dir / "latents.safetensors")
    latents = data["latents"]
    prompts = ref.scene_prompts(ref.VideoScenes.from_tensors(data, "scene."))
    count = len(latents)

    torch.manual_seed(args.seed + 20)
    model = WanTransformer3DModel(**ref.transformer_config()).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    start, earlier = 0, 0.0
    if checkpoint.exists():
        meta = load_checkpoint(checkpoint, {"model": model, "ema": ema}, optimizer)
        start, earlier = meta["step"], meta["seconds"]
        if meta.get("batch", args.batch) != args.batch:
            raise SystemExit(f"transformer: the checkpoint was trained with --batch {meta['batch']}; resume with the same batch")
        print(f"transformer: resumed at step {start} of {args.steps}", flush=True)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"transformer: {parameters} parameters, {count} training clips, {args.steps} steps of {args.batch}", flush=True)
    log = LossLog(args.work_dir / "transformer-loss.tsv", start)
    clock = Clock(earlier)
    window: list[float] = []
    for step in range(start, args.steps):
        generator = step_generator(args.seed, step)
        epoch, offset = divmod(step * args.batch, count)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(args.seed * 31 + epoch))
        index = order[offset : offset + args.batch]
        if len(index) < args.batch:  # the epoch's tail: top up from the start of the next epoch's order
            following = torch.randperm(count, generator=torch.Generator().manual_seed(args.seed * 31 + epoch + 1))
            index = torch.cat([index, following[: args.batch - len(index)]])
        x0 = latents[index].float()
        dropped = torch.rand(args.batch, generator=generator) < ref.PROMPT_DROPOUT
        batch_prompts = ["" if drop else prompts[i] for drop, i in zip(dropped.tolist(), index.tolist(), strict=True)]
        with torch.no_grad():
            prompt_embeds, _ = pipe.encode_prompt(
                batch_prompts, do_classifier_free_guidance=False, max_sequence_length=ref.MAX_SEQUENCE_LENGTH
            )
        noise = torch.randn(x0.shape, generator=generator)
        sigma = sigmas_for(args.batch, generator)
        s = sigma.view(-1, 1, 1, 1, 1)
        prediction = model(
            hidden_states=(1 - s) * x0 + s * noise,
            timestep=sigma * 1000,
            encoder_hidden_states=prompt_embeds,
            return_dict=False,
        )[0]
        loss = F.mse_loss(prediction, noise - x0)
        lr = args.lr * cosine_factor(step, args.steps, args.warmup)
        set_learning_rate(optimizer, lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        update_ema(ema, model, ema_decay(step, args.ema))
        window.append(loss.item())
        done = step + 1
        if done % 50 == 0 or done == args.steps:
            log.append(done, sum(window) / len(window), lr, clock.seconds())
            if done % 250 == 0 or done == args.steps:
                print(f"transformer step {done:6d}  loss {sum(window) / len(window):.4f}  lr {lr:.2e}  {clock.seconds():.0f}s", flush=True)
            window = []
        if done % args.checkpoint_every == 0 or done == args.steps:
            save_checkpoint(
                checkpoint,
                done,
                {"model": model, "ema": ema},
                optimizer,
                {"seconds": clock.seconds(), "steps": args.steps, "batch": args.batch},
            )
        if done % args.preview_every == 0 or done == args.steps:
            preview(args, pipe, ema, done)
    (args.work_dir / "transformer-done.json").write_text(json.dumps({"steps": args.steps, "seconds": clock.seconds()}))


def preview(args: argparse.Namespace, pipe, transformer, step: int) -> None:
    """Clips of held-out prompts at the default sampler with the EMA weights: a PNG (one clip per row)
    and, once the checker exists, its accuracy (appended to ``previews.jsonl``)."""
    scenes = preview_scenes()
    pipe.transformer = transformer
    begin = time.perf_counter()
    clips = ref.generate(pipe, ref.scene_prompts(scenes), seed=0)
    save_grid(args.work_dir / "previews" / f"step-{step:06d}.png", frames_grid(clips[:8]), columns=ref.FRAMES)
    record: dict = {"step": step, "seconds": time.perf_counter() - begin}
    record["travel_px"] = ref.travel_along_direction(clips, scenes).mean().item()
    if args.checker_out.exists():
        record["accuracy"] = ref.clip_accuracy(clips, scenes, ref.load_checker(args.checker_out))
    with (args.work_dir / "previews.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"preview at step {step}: {record}", flush=True)


# --- stage: finish ---------------------------------------------------------------------------------------


def finish(args: argparse.Namespace) -> None:
    from diffusers import WanTransformer3DModel

    from smoothcache.reference import weights_digest

    model = WanTransformer3DModel(**ref.transformer_config())
    meta = load_checkpoint(args.work_dir / "transformer-checkpoint.safetensors", {"ema": model})
    pipe = parts_pipeline(args)
    pipe.transformer = model.eval()
    pipe.save_pretrained(args.out, safe_serialization=True)
    pipe = ref.load_pipeline(args.out)  # score what ships, through the real loading path
    checker = ref.load_checker(args.checker_out)

    scenes = ref.sample_scenes(args.eval_count, torch.Generator().manual_seed(2024), split="test")
    prompts = ref.scene_prompts(scenes)
    real_travel = ref.travel_along_direction(ref.render_scenes(scenes, split="test"), scenes).mean().item()
    results = {}
    for guidance in args.eval_guidance:
        begin = time.perf_counter()
        clips = torch.cat([ref.generate(pipe, prompts[i : i + 25], guidance=guidance, seed=i) for i in range(0, len(prompts), 25)])
        results[guidance] = ref.clip_accuracy(clips, scenes, checker) | {
            "travel_px": ref.travel_along_direction(clips, scenes).mean().item(),
            "seconds": time.perf_counter() - begin,
        }
        print(f"guidance {guidance}: {results[guidance]}", flush=True)
        if guidance == ref.DEFAULT_GUIDANCE:
            save_grid(args.out.parent / "wan-digits-examples.png", frames_grid(clips[:8]), columns=ref.FRAMES)
    steps, losses, _ = read_loss_log(args.work_dir / "transformer-loss.tsv")
    plot_losses(args.out.parent / "wan-digits-loss.png", steps, losses, "wan-digits: flow-matching loss", "velocity MSE")
    summary = {
        "steps": meta["step"],
        "batch": meta.get("batch", args.batch),
        "train_seconds": meta["seconds"],
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "digest": weights_digest(model),
        "eval_count": args.eval_count,
        "real_travel_px": real_travel,
        "accuracy": results,
        "vae": json.loads((args.work_dir / "vae-summary.json").read_text()),
        "checker": json.loads((args.work_dir / "checker-summary.json").read_text()),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)",
    }
    (args.work_dir / "finish-summary.json").write_text(json.dumps(summary, indent=2))
    write_card(args, summary)
    print(f"finish: exported {args.out}, card {args.out.parent / 'wan-digits.md'}", flush=True)


def write_card(args: argparse.Namespace, summary: dict) -> None:
    default = summary["accuracy"].get(ref.DEFAULT_GUIDANCE) or next(iter(summary["accuracy"].values()))
    rows = "\n".join(
        f"| {guidance:g} | {r['all']:.2f} | {r['digit']:.2f} | {r['colour']:.2f} | {r['direction']:.2f} | {r['background']:.2f} "
        f"| {r['travel_px']:.1f} |"
        for guidance, r in summary["accuracy"].items()
    )
    vae, checker = summary["vae"], summary["checker"]
    hours = summary["train_seconds"] / 3600
    card = f"""# wan-digits

A diffusers `WanTransformer3DModel` text-to-video model trained here with flow matching: 13-frame 32x32
clips of a coloured handwritten digit moving one pixel per frame and, when the prompt says so, changing
colour ("a red 3 moving left and turning blue on a striped background"), loaded and run through a real
`WanPipeline`: the Wan reference of the frontier (`smoothcache.reference.wan_digits`).

- Architecture: 6 blocks of width 128 (4 heads of 32, FFN 512), self-attention with Wan's 3D RoPE,
  cross-attention to the text, RMS QK norm across heads, patch (1, 2, 2); {summary["parameters"]:,}
  parameters. Clips go through an `AutoencoderKLWan` (Wan 2.1's causal video autoencoder, base width 16,
  4x per side and 4x in time: 13 frames -> 4 latent frames of 8x8x16; trained here, test PSNR
  {vae["test_psnr_db"]:.1f} dB): 64 video tokens.
- Text: `WanPipeline`'s path, a 4-layer UMT5 encoder (width 128) with frozen seeded random weights
  (relative-position biases scaled by {ref.UMT5_LOCALITY:g}, so that word order survives: which colour is the start and
  which the end), a T5 tokenizer built in memory (`coloured_digits.t5_tokenizer`).
- Data (`wan_digits.sample_scenes`): one digit (scikit-learn's handwritten digits, training split,
  11-14 px) with a start colour, half of the clips turning to another colour linearly over the clip, a
  direction (left, right, up, down; 12 px over the clip) and a black, gray, striped or checkered
  background. {args.latent_count:,} clips encoded once.
- Training: `python scripts/train_wan_digits.py all --work-dir DIR` — flow matching
  (`x_t = (1 - s) x0 + s noise`, velocity target `noise - x0`, as Wan's flow-prediction UniPC expects,
  timestep `1000 s`), noise levels half uniform and half shifted by 3, 10 % empty prompts, AdamW lr
  {args.lr:g} (betas 0.9, 0.99, warm-up {args.warmup}, cosine to a tenth), batch {summary["batch"]},
  {summary["steps"]:,} steps, EMA {args.ema} (the EMA weights ship), seed {args.seed}. {hours:.1f} h of
  training on {summary["machine"]} (final loss {summary["final_loss"]:.4f}).
- Sampling: `wan_digits.generate(pipe, prompts)` = `pipe(prompt, negative_prompt="", height=32,
  width=32, num_frames={ref.FRAMES}, num_inference_steps={ref.DEFAULT_STEPS},
  guidance_scale={ref.DEFAULT_GUIDANCE:g}, max_sequence_length={ref.MAX_SEQUENCE_LENGTH})`:
  `UniPCMultistepScheduler` (flow sigmas, shift {ref.FLOW_SHIFT:g}), two transformer calls per step.
  `max_sequence_length` must be {ref.MAX_SEQUENCE_LENGTH}, as in training.

![training loss](wan-digits-loss.png)
![generated examples, one clip per row](wan-digits-examples.png)

## Is it trained?

The clip checker (`wan_digits.ClipChecker`, `wan-digits-checker.safetensors`: the 13 frames stacked
as channels of a small CNN, trained on rendered clips and their autoencoder round trips,
{checker["steps"]:,} steps) reads held-out rendered clips with every attribute right in
{checker["test_clean"]["all"]:.3f} of them ({checker["test_vae"]["all"]:.3f} through the autoencoder).
On {summary["eval_count"]} generated clips (held-out prompts and glyph draws, {ref.DEFAULT_STEPS}
steps), share of the prompt's attributes read back, and how far the digit's ink centre travels along
the named direction (real clips: {summary["real_travel_px"]:.1f} px):

| guidance | all attributes | digit | colour (start, end) | direction | background | travel (px) |
|---|---|---|---|---|---|---|
{rows}

At the default guidance {ref.DEFAULT_GUIDANCE:g}: {default["all"]:.2f} of the clips have every
attribute right. Weights digest {summary["digest"]}.
"""
    (args.out.parent / "wan-digits.md").write_text(card)


# --- command line ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("vae", "checker", "latents", "transformer", "finish", "all"))
    parser.add_argument("--work-dir", type=Path, default=Path("out/training/wan-digits"))
    parser.add_argument("--out", type=Path, default=ref.PIPELINE_DIR, help="the exported pipeline folder")
    parser.add_argument("--checker-out", type=Path, default=ref.CHECKER_WEIGHTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vae-steps", type=int, default=5000)
    parser.add_argument("--vae-batch", type=int, default=8)
    parser.add_argument("--vae-lr", type=float, default=1e-4, help="1e-3 (fine for the 2D autoencoder) stalls this one")
    parser.add_argument("--vae-kl", type=float, default=1e-4, help="weight of the KL per latent element against the L1 per pixel")
    parser.add_argument("--checker-steps", type=int, default=3000)
    parser.add_argument("--checker-batch", type=int, default=32)
    parser.add_argument("--checker-lr", type=float, default=2e-3)
    parser.add_argument("--latent-count", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=28_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--ema", type=float, default=0.9995)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--preview-every", type=int, default=2500)
    parser.add_argument("--eval-count", type=int, default=100)
    parser.add_argument("--eval-guidance", type=float, nargs="+", default=[1.0, 3.0, 5.0, 7.0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    stages = {
        "vae": train_vae,
        "checker": train_checker,
        "latents": encode_training_set,
        "transformer": train_transformer,
        "finish": finish,
    }
    for name in stages if args.stage == "all" else [args.stage]:
        stages[name](args)


if __name__ == "__main__":
    main()
