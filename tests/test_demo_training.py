"""The demo model's training recipe runs end to end at toy size, resumes, and keeps the latent space in stage 1b."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ldm_ui.demo import train  # noqa: E402


def toy_config(tmp_path) -> train.TrainConfig:
    return train.TrainConfig(
        cache_dir=tmp_path / "cache", out_dir=tmp_path / "demo-toy",
        vae_train_scenes=32, vae_heldout_scenes=8, vae_steps=4, vae_batch=4,
        decoder_steps=4, decoder_batch=4, unet_scenes=168, unet_steps=2, unet_cooldown_steps=2, unet_batch=8,
        warmup_steps=2, checkpoint_every=2, log_every=2, eval_every=1000,
    )


class Killed(Exception):
    pass


def test_the_recipe_runs_end_to_end_resumes_and_writes_a_loadable_folder(tmp_path, capsys, monkeypatch):
    from diffusers import DiffusionPipeline

    cfg = toy_config(tmp_path)
    cfg.cache_dir.mkdir(parents=True)
    # the process dies right after stage 1's first checkpoint (step 2 of 4); a rerun resumes from it and ends
    # with the same weights as a run that was never interrupted
    save = train.save_checkpoint

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(train, "save_checkpoint", save_then_die)
    try:
        train.train_vae(cfg)
    except Killed:
        pass
    monkeypatch.setattr(train, "save_checkpoint", save)
    resumed, _ = train.train_vae(cfg)
    assert "starting at step 2" in capsys.readouterr().out
    other = toy_config(tmp_path / "straight")
    other.cache_dir.mkdir(parents=True)
    straight, _ = train.train_vae(other)
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        torch.testing.assert_close(a, b)

    images = train.heldout_images(cfg)
    encoded_before = resumed.encode(images).latent_dist.mean
    decoder_before = [p.clone() for p in resumed.decoder.parameters()]
    vae, score = train.finetune_decoder(cfg, resumed)
    torch.testing.assert_close(vae.encode(images).latent_dist.mean, encoded_before)  # latent space unchanged
    assert any(not torch.equal(a, b) for a, b in zip(decoder_before, vae.decoder.parameters()))
    assert 0 < score < 100

    pipe = train.train_unet(cfg, vae)
    train.package(pipe, cfg.out_dir)
    loaded = DiffusionPipeline.from_pretrained(cfg.out_dir, local_files_only=True)
    assert type(loaded).__name__ == "StableDiffusionPipeline"
    assert loaded.vae.config.scaling_factor == pipe.vae.config.scaling_factor != 1.0
    image = loaded("a red circle on a blue background", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3)
