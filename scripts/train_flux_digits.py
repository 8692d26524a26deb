"""Train the FLUX-architecture reference (``reference/weights/flux-digits/``) on two-digit scenes, in stages:

    vae          AutoencoderKL on rendered scenes (L1 + a small KL), then its latent scale and shift
    checker      the SceneChecker on rendered scenes and their autoencoder round trips
    latents      the training set: scenes from the training glyphs, encoded once (fp16)
    transformer  FluxTransformer2DModel by flow matching on those latents, prompts through FluxPipeline
    finish       export the pipeline folder, score it with the checker, plot the loss, write the card
    all          every stage in order, each skipped when its output exists (the transformer resumes)

Every stage writes into ``--work-dir`` and resumes from its checkpoint when run again; ``finish`` and
``checker`` write the shipped files under ``reference/weights``. Seeded: each step draws its batch and
noise from a generator seeded by (seed, step), so a resumed run is the run that was not interrupted.
One thread by default (``--threads``), so that a run leaves a core to the rest of the machine. Run from
the repository root; ``make clean`` deletes ``out/``, so give long runs a work directory elsewhere:

    nohup setsid nice -n 19 .venv/bin/python scripts/train_flux_digits.py all --work-dir /work/train-runs/flux-digits \
        > /work/train-logs/flux-digits.log 2>&1 &
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
from smoothcache.reference import flux_digits as ref

LATENT_SIDE = ref.SIDE // 2
LATENT_CHANNELS = 4


# --- stage: autoencoder -------------------------------------------------------------------------------


def rendered_batch(count: int, generator: torch.Generator, split: str = "train") -> tuple[torch.Tensor, ref.ImageScenes]:
    scenes = ref.sample_scenes(count, generator, split)
    return ref.render_scenes(scenes, split), scenes


def train_vae(args: argparse.Namespace) -> None:
    from diffusers import AutoencoderKL

    out_dir = args.work_dir / "vae"
    if (out_dir / "config.json").exists():
        print(f"vae: {out_dir} exists, skipped", flush=True)
        return
    checkpoint = args.work_dir / "vae-checkpoint.safetensors"
    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**ref.vae_config()).train()
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
        images, _ = rendered_batch(args.vae_batch, step_generator(args.seed + 1, step))
        x = base.to_model_range(images)
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=step_generator(args.seed + 2, step))).sample
        kl = posterior.kl().mean() / (LATENT_CHANNELS * LATENT_SIDE**2)
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
    test_images, _ = rendered_batch(512, torch.Generator().manual_seed(args.seed + 3), split="test")
    with torch.no_grad():
        latents = torch.cat([vae.encode(base.to_model_range(chunk)).latent_dist.mode() for chunk in test_images.split(64)])
        decoded = torch.cat([vae.decode(chunk).sample for chunk in latents.split(64)])
    shift, scale = latents.mean().item(), 1.0 / latents.std().item()
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    quality = psnr(base.from_model_range(decoded), test_images)
    vae.save_pretrained(out_dir, safe_serialization=True)
    summary = {"steps": args.vae_steps, "batch": args.vae_batch, "seconds": clock.seconds(), "test_psnr_db": quality}
    (args.work_dir / "vae-summary.json").write_text(json.dumps(summary | {"shift": shift, "scale": scale}, indent=2))
    save_grid(args.work_dir / "vae-reconstructions.png", torch.cat([test_images[:16], base.from_model_range(decoded[:16])]))
    print(f"vae: saved {out_dir}, test reconstruction PSNR {quality:.2f} dB, shift {shift:.4f}, scale {scale:.4f}", flush=True)


def load_vae(args: argparse.Namespace):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(args.work_dir / "vae").eval().requires_grad_(False)


def round_trip(vae, images: torch.Tensor) -> torch.Tensor:
    """Pictures in [0, 1] through the autoencoder (encode to the mode, decode), in [0, 1]."""
    with torch.no_grad():
        decoded = vae.decode(vae.encode(base.to_model_range(images)).latent_dist.mode()).sample
    return base.from_model_range(decoded)


# --- stage: checker -------------------------------------------------------------------------------------


def checker_loss(checker: ref.SceneChecker, images: torch.Tensor, scenes: ref.ImageScenes) -> torch.Tensor:
    logits = checker(images)
    targets = ref.checker_targets(scenes)
    return sum(F.cross_entropy(logits[name], targets[name]) for name in ref.CHECKER_HEADS) / len(ref.CHECKER_HEADS)


def train_checker(args: argparse.Namespace) -> None:
    from safetensors.torch import save_file

    if args.checker_out.exists():
        print(f"checker: {args.checker_out} exists, skipped", flush=True)
        return
    vae = load_vae(args)
    torch.manual_seed(args.seed + 10)
    checker = ref.SceneChecker().train()
    optimizer = torch.optim.AdamW(checker.parameters(), lr=args.checker_lr, weight_decay=1e-4)
    clock = Clock()
    for step in range(args.checker_steps):
        generator = step_generator(args.seed + 11, step)
        images, scenes = rendered_batch(args.checker_batch, generator)
        # half of each batch through the autoencoder, as generated images come out of its decoder
        half = args.checker_batch // 2
        images = torch.cat([images[:half], round_trip(vae, images[half:])])
        images = (
            images + 0.03 * torch.rand(len(images), 1, 1, 1, generator=generator) * torch.randn(images.shape, generator=generator)
        ).clamp(0, 1)
        set_learning_rate(optimizer, args.checker_lr * cosine_factor(step, args.checker_steps, warmup=100, floor=0.02))
        loss = checker_loss(checker, images, scenes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 100 == 0:
            print(f"checker step {step + 1:5d}  loss {loss.item():.4f}  {clock.seconds():.0f}s", flush=True)
    checker.eval()
    test_images, test_scenes = rendered_batch(2000, torch.Generator().manual_seed(args.seed + 12), split="test")
    clean = ref.scene_accuracy(test_images, test_scenes, checker)
    through_vae = ref.scene_accuracy(torch.cat([round_trip(vae, chunk) for chunk in test_images.split(100)]), test_scenes, checker)
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
    print(f"checker: saved {args.checker_out}; held-out scenes {clean}; through the autoencoder {through_vae}", flush=True)


# --- stage: latents -------------------------------------------------------------------------------------


def encode_training_set(args: argparse.Namespace) -> None:
    from safetensors.torch import save_file

    path = args.work_dir / "latents.safetensors"
    if path.exists():
        print(f"latents: {path} exists, skipped", flush=True)
        return
    vae = load_vae(args)
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    chunks, scene_chunks = [], []
    clock = Clock()
    for index in range(math.ceil(args.latent_count / 1000)):
        images, scenes = rendered_batch(1000, torch.Generator().manual_seed(args.seed * 7919 + 100_000 + index))
        with torch.no_grad():
            latents = torch.cat([vae.encode(base.to_model_range(chunk)).latent_dist.mode() for chunk in images.split(100)])
        chunks.append(((latents - shift) * scale).half())
        scene_chunks.append(scenes)
        if (index + 1) % 10 == 0:
            print(f"latents: {1000 * (index + 1)} encoded, {clock.seconds():.0f}s", flush=True)
    tensors = {"latents": torch.cat(chunks)[: args.latent_count].contiguous()}
    for field, value in (
        ref.ImageScenes(
            **{
                name: torch.cat([getattr(chunk, name) for chunk in scene_chunks])[: args.latent_count]
                for name in ref.ImageScenes.__dataclass_fields__
            }
        )
        .tensors("scene.")
        .items()
    ):
        tensors[field] = value.contiguous()
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, partial)
    partial.replace(path)
    print(f"latents: saved {path} ({tensors['latents'].shape[0]} scenes, {clock.seconds():.0f}s)", flush=True)


# --- stage: transformer ---------------------------------------------------------------------------------


def parts_pipeline(args: argparse.Namespace):
    """The pipeline of fixed parts (text encoders, tokenizers, scheduler, trained autoencoder) saved once
    into the work directory and always loaded from there, so that training, previews and the export use
    the very same text encoders."""
    from diffusers import FluxPipeline

    parts = args.work_dir / "parts"
    if not (parts / "model_index.json").exists():
        ref.build_pipeline(vae=load_vae(args), seed=args.seed).save_pretrained(parts, safe_serialization=True)
    pipe = FluxPipeline.from_pretrained(parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def preview_scenes(count: int = 32) -> ref.ImageScenes:
    """Fixed held-out scenes (test glyphs) whose prompts the previews and the final evaluation use."""
    return ref.sample_scenes(count, torch.Generator().manual_seed(4242), split="test")


def sigmas_for(count: int, generator: torch.Generator) -> torch.Tensor:
    """Training noise levels: half uniform in (0, 1), half uniform then shifted as the sampler's grid is
    (shift e^mu = 3.16), so that the high-noise steps the sampler dwells on are trained densely and the
    low-noise ones that draw the textures are not starved."""
    u = torch.rand(count, generator=generator)
    shift = math.exp(ref.SHIFT_MU)
    shifted = shift * u / (1 + (shift - 1) * u)
    use_shifted = torch.rand(count, generator=generator) < 0.5
    return torch.where(use_shifted, shifted, u).clamp(1e-4, 1.0)


def train_transformer(args: argparse.Namespace) -> None:
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from safetensors.torch import load_file

    checkpoint = args.work_dir / "transformer-checkpoint.safetensors"
    if (args.work_dir / "transformer-done.json").exists():
        print("transformer: training finished, skipped", flush=True)
        return
    pipe = parts_pipeline(args)
    data = load_file(args.work_dir / "latents.safetensors")
    latents = data["latents"]
    scenes = ref.ImageScenes.from_tensors(data, "scene.")
    prompts = ref.scene_prompts(scenes)
    count = len(latents)

    torch.manual_seed(args.seed + 20)
    model = FluxTransformer2DModel(**ref.transformer_config()).train()
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
    print(f"transformer: {parameters} parameters, {count} training scenes, {args.steps} steps of {args.batch}", flush=True)
    log = LossLog(args.work_dir / "transformer-loss.tsv", start)
    clock = Clock(earlier)
    image_ids = FluxPipeline._prepare_latent_image_ids(args.batch, LATENT_SIDE // 2, LATENT_SIDE // 2, "cpu", torch.float32)
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
        batch_prompts = [prompts[i] for i in index.tolist()]
        dropped = torch.rand(args.batch, generator=generator) < ref.PROMPT_DROPOUT
        batch_prompts = ["" if drop else prompt for drop, prompt in zip(dropped.tolist(), batch_prompts, strict=True)]
        with torch.no_grad():
            prompt_embeds, pooled, text_ids = pipe.encode_prompt(batch_prompts, batch_prompts, max_sequence_length=ref.MAX_SEQUENCE_LENGTH)
        noise = torch.randn(x0.shape, generator=generator)
        sigma = sigmas_for(args.batch, generator)
        x_t = (1 - sigma[:, None, None, None]) * x0 + sigma[:, None, None, None] * noise
        packed = FluxPipeline._pack_latents(x_t, args.batch, LATENT_CHANNELS, LATENT_SIDE, LATENT_SIDE)
        target = FluxPipeline._pack_latents(noise - x0, args.batch, LATENT_CHANNELS, LATENT_SIDE, LATENT_SIDE)
        prediction = model(
            hidden_states=packed,
            timestep=sigma,
            pooled_projections=pooled,
            encoder_hidden_states=prompt_embeds,
            txt_ids=text_ids,
            img_ids=image_ids,
            return_dict=False,
        )[0]
        loss = F.mse_loss(prediction, target)
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
    """Samples of held-out prompts at the default sampler with the EMA weights: a PNG and, once the
    checker exists, its accuracy (appended to ``previews.jsonl``)."""
    scenes = preview_scenes()
    pipe.transformer = transformer
    begin = time.perf_counter()
    images = ref.generate(pipe, ref.scene_prompts(scenes), seed=0)
    save_grid(args.work_dir / "previews" / f"step-{step:06d}.png", images)
    record: dict = {"step": step, "seconds": time.perf_counter() - begin}
    if args.checker_out.exists():
        record["accuracy"] = ref.scene_accuracy(images, scenes, ref.load_checker(args.checker_out))
    with (args.work_dir / "previews.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"preview at step {step}: {record}", flush=True)


# --- stage: finish ---------------------------------------------------------------------------------------


def finish(args: argparse.Namespace) -> None:
    from diffusers import FluxTransformer2DModel

    from smoothcache.reference import weights_digest

    checkpoint = args.work_dir / "transformer-checkpoint.safetensors"
    model = FluxTransformer2DModel(**ref.transformer_config())
    meta = load_checkpoint(checkpoint, {"ema": model})
    pipe = parts_pipeline(args)
    pipe.transformer = model.eval()
    pipe.save_pretrained(args.out, safe_serialization=True)
    pipe = ref.load_pipeline(args.out)  # score what ships, through the real loading path
    checker = ref.load_checker(args.checker_out)

    scenes = ref.sample_scenes(args.eval_count, torch.Generator().manual_seed(2024), split="test")
    prompts = ref.scene_prompts(scenes)
    results = {}
    for guidance in args.eval_guidance:
        begin = time.perf_counter()
        images = torch.cat([ref.generate(pipe, prompts[i : i + 50], guidance=guidance, seed=i) for i in range(0, len(prompts), 50)])
        results[guidance] = ref.scene_accuracy(images, scenes, checker) | {"seconds": time.perf_counter() - begin}
        print(f"guidance {guidance}: {results[guidance]}", flush=True)
        if guidance == ref.DEFAULT_GUIDANCE:
            save_grid(args.out.parent / "flux-digits-examples.png", images[:32])
    steps, losses, _ = read_loss_log(args.work_dir / "transformer-loss.tsv")
    plot_losses(args.out.parent / "flux-digits-loss.png", steps, losses, "flux-digits: flow-matching loss", "velocity MSE")
    summary = {
        "steps": meta["step"],
        "batch": meta.get("batch", args.batch),
        "train_seconds": meta["seconds"],
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "digest": weights_digest(model),
        "eval_count": args.eval_count,
        "accuracy": results,
        "vae": json.loads((args.work_dir / "vae-summary.json").read_text()),
        "checker": json.loads((args.work_dir / "checker-summary.json").read_text()),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)",
    }
    (args.work_dir / "finish-summary.json").write_text(json.dumps(summary, indent=2))
    write_card(args, summary)
    print(f"finish: exported {args.out}, card {args.out.parent / 'flux-digits.md'}", flush=True)


def write_card(args: argparse.Namespace, summary: dict) -> None:
    default = summary["accuracy"].get(ref.DEFAULT_GUIDANCE) or next(iter(summary["accuracy"].values()))
    rows = "\n".join(
        f"| {guidance:g} | {r['all']:.2f} | {r['digit']:.2f} | {r['colour']:.2f} | {r['size']:.2f} | {r['layout']:.2f} "
        f"| {r['background']:.2f} |"
        for guidance, r in summary["accuracy"].items()
    )
    vae, checker = summary["vae"], summary["checker"]
    hours = summary["train_seconds"] / 3600
    card = f"""# flux-digits

A diffusers `FluxTransformer2DModel` trained here with flow matching to draw two coloured handwritten
digits from a prompt ("a small red 3 above a large blue 7 on a striped background"), loaded and run
through a real `FluxPipeline`: the FLUX reference of the frontier (`smoothcache.reference.flux_digits`).

- Architecture: 2 double-stream (joint attention) and 4 single-stream (parallel attention + MLP)
  blocks, width 128 (4 heads of 32), RoPE axes (8, 12, 12), no guidance embedding (as FLUX.1-schnell;
  guidance is true CFG), {summary["parameters"]:,} parameters. 32x32 RGB through an `AutoencoderKL`
  (2x per side, 4 latent channels, no quant convolutions, trained here: test PSNR
  {vae["test_psnr_db"]:.1f} dB), packed 2x2 as FLUX does: 64 image tokens, 16 text tokens.
- Text: `FluxPipeline`'s path, a 2-layer CLIP (pooled, width 64) and a 4-layer T5 (width 128), frozen
  seeded random weights, tokenizers built in memory (`coloured_digits.clip_tokenizer`,
  `t5_tokenizer`). T5's random relative-position biases are scaled by {ref.T5_LOCALITY:g} (seed {ref.T5_SEED}) so that each word's vector
  carries its neighbours: which colour and size go with which digit.
- Data (`flux_digits.sample_scenes`): two digits (scikit-learn's handwritten 8x8 digits, training split),
  each with a colour (red, green, blue, yellow, white) and a size (small 9.5-11 px, large 13.5-15.5 px),
  placed in the halves their relation names (above, below, left of, right of), on a black, gray,
  striped (2 px) or checkered (4 px) background; every attribute uniform and independent.
  {summary.get("latent_count", args.latent_count):,} scenes encoded once.
- Training: `python scripts/train_flux_digits.py all --work-dir DIR` — flow matching
  (`x_t = (1 - s) x0 + s noise`, velocity target `noise - x0`, the FLUX convention), noise levels half
  uniform and half shifted by 3.16, 10 % empty prompts, AdamW lr {args.lr:g} (betas 0.9, 0.99, warm-up
  {args.warmup}, cosine to a tenth), batch {summary["batch"]}, {summary["steps"]:,} steps, EMA {args.ema}
  (the EMA weights ship), seed {args.seed}. {hours:.1f} h of training on {summary["machine"]}
  (final loss {summary["final_loss"]:.4f}).
- Sampling: `flux_digits.generate(pipe, prompts)` = `pipe(prompt, negative_prompt="",
  true_cfg_scale={ref.DEFAULT_GUIDANCE:g}, height=32, width=32, num_inference_steps={ref.DEFAULT_STEPS},
  max_sequence_length={ref.MAX_SEQUENCE_LENGTH})`: `FlowMatchEulerDiscreteScheduler` with FLUX.1-dev's
  dynamic shifting (mu = {ref.SHIFT_MU} at 64 tokens), two transformer calls per step.
  `max_sequence_length` must be {ref.MAX_SEQUENCE_LENGTH}, as in training.

![training loss](flux-digits-loss.png)
![generated examples](flux-digits-examples.png)

## Is it trained?

The scene checker (`flux_digits.SceneChecker`, `flux-digits-checker.safetensors`, trained on rendered
scenes and their autoencoder round trips, {checker["steps"]:,} steps) reads held-out rendered scenes
with all attributes right in {checker["test_clean"]["all"]:.3f} of them ({checker["test_vae"]["all"]:.3f}
through the autoencoder). On {summary["eval_count"]} generated images (held-out prompts and glyph
draws, {ref.DEFAULT_STEPS} steps), share of the prompt's attributes read back:

| true CFG | all attributes | digit | colour | size | relation | background |
|---|---|---|---|---|---|---|
{rows}

At the default guidance {ref.DEFAULT_GUIDANCE:g}: {default["all"]:.2f} of the images have every
attribute right. Weights digest {summary["digest"]}.
"""
    (args.out.parent / "flux-digits.md").write_text(card)


# --- command line ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("vae", "checker", "latents", "transformer", "finish", "all"))
    parser.add_argument("--work-dir", type=Path, default=Path("out/training/flux-digits"))
    parser.add_argument("--out", type=Path, default=ref.PIPELINE_DIR, help="the exported pipeline folder")
    parser.add_argument("--checker-out", type=Path, default=ref.CHECKER_WEIGHTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vae-steps", type=int, default=3000)
    parser.add_argument("--vae-batch", type=int, default=32)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--vae-kl", type=float, default=1e-4, help="weight of the KL per latent element against the L1 per pixel")
    parser.add_argument("--checker-steps", type=int, default=3000)
    parser.add_argument("--checker-batch", type=int, default=64)
    parser.add_argument("--checker-lr", type=float, default=2e-3)
    parser.add_argument("--latent-count", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=36_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--ema", type=float, default=0.9995)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--preview-every", type=int, default=2500)
    parser.add_argument("--eval-count", type=int, default=200)
    parser.add_argument("--eval-guidance", type=float, nargs="+", default=[1.0, 2.0, 4.0, 6.0])
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
