"""Train the built-in demo model from scratch: ``python -m ldm_ui.demo.train``.

Stage 1: a KL autoencoder (diffusers ``AutoencoderKL``, f=8: 64x64x3 -> 8x8x4), reconstruction + small KL loss.
Stage 1b: the encoder is frozen and the decoder alone trains on for sharper reconstructions; the latent space does
not move, so nothing trained on it has to be retrained (Stable Diffusion's ft-MSE VAE was made the same way).
Stage 2: with the VAE frozen and the latents cached, a text-conditioned ``UNet2DConditionModel`` learns to
denoise latents (epsilon prediction, DDPM noise schedule) with cross-attention to a small ``CLIPTextModel``
trained with it; 10% of captions are dropped to "" so classifier-free guidance works.
Finally both are packaged as a standard diffusers ``StableDiffusionPipeline`` folder.

Seeded and resumable: checkpoints and cached latents live in ``.cache/demo-train/``; rerunning continues where
it stopped (delete that folder, or pass another ``--cache-dir``, to start over with other settings).
The defaults below are the recipe that produced the shipped weights (see the model card for one deviation).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ldm_ui.demo import data


@dataclass
class TrainConfig:
    seed: int = 0
    cache_dir: Path = Path(".cache/demo-train")
    out_dir: Path = Path("models/diffusers/demo-shapes")
    threads: int = 1  # on a shared 2-core box one thread was ~10x faster than two fighting other jobs
    # stage 1: autoencoder
    vae_train_scenes: int = 168 * 48
    vae_heldout_scenes: int = 168 * 3
    vae_steps: int = 1000
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-7  # on the per-sample KL sum: keeps latents tame without costing detail
    # stage 1b: with the encoder frozen (so the latent space stays put), the decoder alone trains longer
    decoder_steps: int = 6000
    decoder_batch: int = 16
    decoder_lr: float = 1e-3
    # stage 2: text-conditioned U-Net in latent space
    unet_scenes: int = 168 * 96
    unet_steps: int = 6000
    unet_cooldown_steps: int = 2000  # then the learning rate falls linearly to zero: a calmer final model
    unet_batch: int = 64
    unet_lr: float = 1.5e-3  # constant after warmup until the cooldown
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0  # Min-SNR loss weighting: converges faster than plain epsilon MSE
    warmup_steps: int = 200
    checkpoint_every: int = 250
    eval_every: int = 1000
    log_every: int = 50


HELDOUT_SEED_OFFSET = 1_000_003  # held-out scenes come from a different seed than any training scenes


# ---------------------------------------------------------------- shared helpers

def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two batches in [-1, 1], measured on the [0, 1] range."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def lr_at(step: int, total: int, peak: float, warmup: int, floor: float = 0.05) -> float:
    """Linear warmup, then cosine decay to ``floor`` x the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float, clip: list | None = None) -> None:
    """One step at learning rate ``lr``; with ``clip``, those parameters' gradients are clipped to norm 1."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
    opt.step()


@torch.no_grad()
def encode_means(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The encoder's posterior means of images in [-1, 1], a batch at a time."""
    return torch.cat([vae.encode(part).latent_dist.mean for part in images.split(batch)])


def step_generator(seed: int, step: int) -> torch.Generator:
    """Randomness for one step depends only on (seed, step), so a resumed run equals an uninterrupted one."""
    return torch.Generator().manual_seed(seed * 1_000_000 + step)


def save_checkpoint(path: Path, step: int, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, **{k: v.state_dict() for k, v in state.items()}}, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a broken checkpoint


def load_checkpoint(path: Path, **state) -> int:
    if not path.exists():
        return 0
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for key, obj in state.items():
        obj.load_state_dict(saved[key])
    return saved["step"]


class Progress:
    def __init__(self, name: str, total: int, start: int):
        self.name, self.total, self.start, self.t0 = name, total, start, time.time()

    def log(self, step: int, **figures: float) -> None:
        done = step - self.start
        per_step = (time.time() - self.t0) / max(done, 1)
        eta_min = per_step * (self.total - step) / 60
        shown = " ".join(f"{k}={v:.4g}" for k, v in figures.items())
        print(f"[{self.name}] step {step}/{self.total} {shown} {per_step:.3f}s/step eta {eta_min:.1f}min",
              flush=True)


# ---------------------------------------------------------------- stage 1: autoencoder

def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=data.SIZE,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64), layers_per_block=1,
        norm_num_groups=4,  # >= 4 channels per group: one channel per group trained far worse
    )


def heldout_images(cfg: TrainConfig) -> torch.Tensor:
    images, _ = data.make_dataset(cfg.vae_heldout_scenes, cfg.seed + HELDOUT_SEED_OFFSET)
    return to_tensor(images)


@torch.no_grad()
def vae_psnr(vae, images: torch.Tensor) -> float:
    vae.eval()
    recon = torch.cat([vae(batch, sample_posterior=False).sample for batch in images.split(64)])
    vae.train()
    return psnr(recon, images)


def load_vae_stage(vae, final: Path, cfg: TrainConfig):
    """A stage that already finished: its saved weights, frozen, and their held-out PSNR."""
    vae.load_state_dict(torch.load(final, map_location="cpu", weights_only=True))
    return vae.eval().requires_grad_(False), vae_psnr(vae, heldout_images(cfg))


def finish_vae_stage(name: str, vae, heldout: torch.Tensor, final: Path):
    """Measure, report and save a finished stage; returns the frozen VAE and its held-out PSNR."""
    score = vae_psnr(vae, heldout)
    print(f"[{name}] done: held-out PSNR {score:.2f} dB", flush=True)
    torch.save(vae.state_dict(), final)
    return vae.eval().requires_grad_(False), score


def train_vae(cfg: TrainConfig):
    """Stage 1. Returns the trained (frozen) VAE and its held-out PSNR."""
    final = cfg.cache_dir / "vae-final.pt"
    torch.manual_seed(cfg.seed)
    vae = build_vae()
    if final.exists():
        return load_vae_stage(vae, final, cfg)

    images = to_tensor(data.make_dataset(cfg.vae_train_scenes, cfg.seed)[0])
    heldout = heldout_images(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    ckpt = cfg.cache_dir / "vae.pt"
    start = load_checkpoint(ckpt, model=vae, opt=opt)
    print(f"[vae] {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M params, "
          f"{len(images)} train / {len(heldout)} held-out scenes, starting at step {start}", flush=True)
    progress = Progress("vae", cfg.vae_steps, start)
    for step in range(start, cfg.vae_steps):
        gen = step_generator(cfg.seed, step)
        batch = images[torch.randint(len(images), (cfg.vae_batch,), generator=gen)]
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        rec_loss = F.l1_loss(recon, batch) + F.mse_loss(recon, batch)
        kl = posterior.kl().mean()
        optimizer_step(opt, rec_loss + cfg.vae_kl_weight * kl, lr_at(step, cfg.vae_steps, cfg.vae_lr, cfg.warmup_steps))
        if (step + 1) % cfg.log_every == 0:
            figures = {"loss": rec_loss.item(), "kl": kl.item()}
            if (step + 1) % (cfg.log_every * 10) == 0:
                figures["heldout_psnr_db"] = vae_psnr(vae, heldout)
            progress.log(step + 1, **figures)
        if (step + 1) % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt, step + 1, model=vae, opt=opt)
    return finish_vae_stage("vae", vae, heldout, final)


def finetune_decoder(cfg: TrainConfig, vae):
    """Stage 1b. The encoder is frozen, so the latents (and everything trained on them) keep their meaning,
    while the decoder trains longer on reconstruction alone. It decodes posterior means, not samples: stage 2
    learns the means, so they are what the decoder meets at generation time, and without the sampling noise
    it can afford sharp edges. Returns the VAE and its held-out PSNR."""
    final = cfg.cache_dir / "vae-decoder-final.pt"
    if final.exists():
        return load_vae_stage(vae, final, cfg)

    vae.eval().requires_grad_(False)
    images = to_tensor(data.make_dataset(cfg.vae_train_scenes, cfg.seed)[0])
    heldout = heldout_images(cfg)
    means = encode_means(vae, images)
    decoder = torch.nn.ModuleDict({"post_quant_conv": vae.post_quant_conv, "decoder": vae.decoder})
    decoder.train().requires_grad_(True)
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.decoder_lr, weight_decay=0.0)
    ckpt = cfg.cache_dir / "decoder.pt"
    start = load_checkpoint(ckpt, model=decoder, opt=opt)
    print(f"[decoder] {sum(p.numel() for p in decoder.parameters()) / 1e6:.2f}M params, held-out PSNR "
          f"{vae_psnr(vae, heldout):.2f} dB, starting at step {start}", flush=True)
    progress = Progress("decoder", cfg.decoder_steps, start)
    for step in range(start, cfg.decoder_steps):
        gen = step_generator(cfg.seed, step)
        index = torch.randint(len(images), (cfg.decoder_batch,), generator=gen)
        recon = vae.decode(means[index]).sample
        loss = F.l1_loss(recon, images[index]) + F.mse_loss(recon, images[index])
        optimizer_step(opt, loss, lr_at(step, cfg.decoder_steps, cfg.decoder_lr, cfg.warmup_steps))
        if (step + 1) % cfg.log_every == 0:
            figures = {"loss": loss.item()}
            if (step + 1) % (cfg.log_every * 5) == 0:
                figures["heldout_psnr_db"] = vae_psnr(vae, heldout)
            progress.log(step + 1, **figures)
        if (step + 1) % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt, step + 1, model=decoder, opt=opt)
    return finish_vae_stage("decoder", vae, heldout, final)


# ---------------------------------------------------------------- stage 2: text-conditioned U-Net in latent space

def build_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, projection_dim=128,
        num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=data.SIZE // 8, in_channels=4, out_channels=4,
        # two resolutions: plain ResNets at 8x8, cross-attention to the caption at 4x4, where a sequence of 16
        # already sees the whole image; attention layers dominate the cost per step at this size
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2D",
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=128, attention_head_dim=4,  # diffusers reads this as 4 heads per attention
        # the pooled caption also steers every ResNet through the time embedding: a direct path for the colors
        addition_embed_type="text", addition_embed_type_num_heads=64,  # 64: what ControlNetModel.from_unet assumes
    )


def build_noise_scheduler():
    from diffusers import DDPMScheduler

    # Stable Diffusion's training schedule, epsilon prediction
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, prediction_type="epsilon", clip_sample=False, steps_offset=1)


@torch.no_grad()
def cache_latents(cfg: TrainConfig, vae, tokenizer) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Encode the stage-2 scenes once with the frozen VAE: (latents, caption token ids, scaling factor)."""
    path = cfg.cache_dir / "latents.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return saved["latents"], saved["ids"], saved["scaling_factor"]
    images, scenes = data.make_dataset(cfg.unet_scenes, cfg.seed + 1)
    latents = encode_means(vae, to_tensor(images))
    scaling_factor = 1.0 / latents.std().item()  # unit-variance latents, as the noise schedule assumes
    ids = tokenizer([s.caption for s in scenes], padding="max_length", truncation=True,
                    max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    torch.save({"latents": latents, "ids": ids, "scaling_factor": scaling_factor}, path)
    print(f"[latents] cached {tuple(latents.shape)}, mean {latents.mean():.3f}, std {latents.std():.3f} "
          f"-> scaling factor {scaling_factor:.4f}", flush=True)
    return latents, ids, scaling_factor


def make_pipeline(vae, text_encoder, tokenizer, unet, scaling_factor: float):
    """The standard diffusers pipeline over our components; DPM-Solver++ samples well in 20 steps."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    vae.register_to_config(scaling_factor=scaling_factor)
    scheduler = DPMSolverMultistepScheduler.from_config(build_noise_scheduler().config)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def train_unet(cfg: TrainConfig, vae):
    """Stage 2. Returns the in-memory pipeline (VAE frozen; U-Net and text encoder trained)."""
    from ldm_ui.demo import scoring, tokenizer as demo_tokenizer

    tokenizer = demo_tokenizer.build_tokenizer(cfg.cache_dir / "tokenizer")
    latents, ids, scaling_factor = cache_latents(cfg, vae, tokenizer)
    empty_ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                          return_tensors="pt").input_ids
    torch.manual_seed(cfg.seed)
    unet, text_encoder = build_unet(), build_text_encoder(tokenizer)
    noise_scheduler = build_noise_scheduler()
    alphas_cumprod = noise_scheduler.alphas_cumprod
    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=1e-2)
    ckpt = cfg.cache_dir / "unet.pt"
    start = load_checkpoint(ckpt, unet=unet, text_encoder=text_encoder, opt=opt)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(f"[unet] U-Net {count(unet):.2f}M + text encoder {count(text_encoder):.2f}M params, "
          f"{len(latents)} cached latents, starting at step {start}", flush=True)
    pipe = make_pipeline(vae, text_encoder, tokenizer, unet, scaling_factor)
    total = cfg.unet_steps + cfg.unet_cooldown_steps
    progress = Progress("unet", total, start)
    unet.train(), text_encoder.train()
    for step in range(start, total):
        gen = step_generator(cfg.seed, step)
        index = torch.randint(len(latents), (cfg.unet_batch,), generator=gen)
        clean = latents[index] * scaling_factor
        tokens = ids[index].clone()
        tokens[torch.rand(cfg.unet_batch, generator=gen) < cfg.caption_dropout] = empty_ids[0]
        noise = torch.randn(clean.shape, generator=gen)
        t = torch.randint(noise_scheduler.config.num_train_timesteps, (cfg.unet_batch,), generator=gen)
        noisy = noise_scheduler.add_noise(clean, noise, t)
        prediction = unet(noisy, t, encoder_hidden_states=text_encoder(tokens)[0]).sample
        snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
        weight = snr.clamp(max=cfg.min_snr_gamma) / snr
        loss = (weight * (prediction - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        scale = min(1.0, (step + 1) / cfg.warmup_steps, (total - step) / max(1, cfg.unet_cooldown_steps))
        optimizer_step(opt, loss, cfg.unet_lr * scale, clip=params)
        if (step + 1) % cfg.log_every == 0:
            progress.log(step + 1, loss=loss.item())
        if (step + 1) % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt, step + 1, unet=unet, text_encoder=text_encoder, opt=opt)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == total:
            unet.eval(), text_encoder.eval()
            result = scoring.evaluate(pipe, scoring.prompts(every=3))
            print(f"[unet] step {step + 1} mini-eval: " + scoring.summary(result), flush=True)
            unet.train(), text_encoder.train()
    unet.eval(), text_encoder.eval()
    return pipe


def package(pipe, out_dir: Path) -> None:
    """Save the standard diffusers folder (fp32 safetensors) plus the tokenizer's CLIP-format source files."""
    from ldm_ui.demo import tokenizer as demo_tokenizer

    pipe.save_pretrained(out_dir, safe_serialization=True)
    demo_tokenizer.write_tokenizer_files(out_dir / "tokenizer")
    size_mb = sum(f.stat().st_size for f in out_dir.rglob("*.safetensors")) / 1e6
    print(f"[package] wrote {out_dir} ({size_mb:.1f} MB of weights)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=TrainConfig.out_dir, help="diffusers folder to write")
    parser.add_argument("--cache-dir", type=Path, default=TrainConfig.cache_dir, help="checkpoints and logs")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--vae-steps", type=int, default=TrainConfig.vae_steps)
    parser.add_argument("--decoder-steps", type=int, default=TrainConfig.decoder_steps)
    parser.add_argument("--unet-steps", type=int, default=TrainConfig.unet_steps, help="at constant learning rate")
    parser.add_argument("--unet-cooldown-steps", type=int, default=TrainConfig.unet_cooldown_steps)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads, help="torch CPU threads")
    args = parser.parse_args(argv)
    cfg = TrainConfig(seed=args.seed, cache_dir=args.cache_dir, out_dir=args.out, threads=args.threads,
                      vae_steps=args.vae_steps, decoder_steps=args.decoder_steps, unet_steps=args.unet_steps,
                      unet_cooldown_steps=args.unet_cooldown_steps)
    torch.set_num_threads(cfg.threads)
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    vae, vae_score = train_vae(cfg)  # stage 1
    vae, vae_score = finetune_decoder(cfg, vae)  # stage 1b
    print(f"[vae] held-out PSNR {vae_score:.2f} dB ({(time.time() - t0) / 60:.1f} min so far)", flush=True)
    pipe = train_unet(cfg, vae)  # stage 2
    package(pipe, cfg.out_dir)
    print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
