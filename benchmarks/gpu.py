"""GPU benchmark: bare diffusers vs the engine vs the full UI path, memory modes, model switch, torch.compile.

Builds SD1.5-sized and SDXL-sized pipelines with random weights from configs (nothing to download), saves them
as diffusers folders, and measures in one process, alternating the paths being compared:
- it/s at 20 steps, CFG 7, fp16: SD1.5 at 512px, SDXL at 1024px; bare pipeline call vs the engine with approx
  previews every step vs the Gradio API (gradio_client, previews every step);
- peak VRAM of an SDXL 1024px image by default, with --medvram and with --lowvram;
- peak VRAM while switching from SD1.5 to SDXL (target: <= SDXL alone + 10%);
- torch.compile speed-up of the U-Net (SD1.5 512px);
- an active LoRA's speed against the base model.
Writes every figure as JSON (--out). Needs CUDA; `--smoke` runs the same code at toy sizes on the CPU to check
the script itself. Run: python benchmarks/gpu.py --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

PROMPT, NEGATIVE = "a photo of a red fox in the snow, detailed", "blurry"


def sizes(smoke: bool) -> dict:
    if smoke:
        return {"sd15": dict(blocks=(32, 64), layers=1, heads=2, cross=32, text_layers=2, text_width=32, px=64),
                "sdxl": dict(blocks=(32, 64), layers=1, heads=2, px=64, text_layers=2), "steps": 3}
    return {"sd15": dict(blocks=(320, 640, 1280, 1280), layers=2, heads=8, cross=768, text_layers=12,
                         text_width=768, px=512),
            "sdxl": dict(blocks=(320, 640, 1280), layers=2, heads=None, px=1024, text_layers=None), "steps": 20}


def tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    from tiny_models import write_char_tokenizer

    write_char_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(folder)


def vae_for(blocks, smoke: bool, force_upcast: bool, scaling: float):
    from diffusers import AutoencoderKL

    channels = (32, 32) if smoke else (128, 256, 512, 512)
    return AutoencoderKL(block_out_channels=channels, latent_channels=4, layers_per_block=1 if smoke else 2,
                         down_block_types=("DownEncoderBlock2D",) * len(channels),
                         up_block_types=("UpDecoderBlock2D",) * len(channels), force_upcast=force_upcast,
                         scaling_factor=scaling, norm_num_groups=32)


def build_sd15(folder: Path, s: dict, smoke: bool) -> Path:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    c = s["sd15"]
    tok = tokenizer(folder / "tok")
    unet = UNet2DConditionModel(sample_size=c["px"] // (2 if smoke else 8), cross_attention_dim=c["cross"],
                                attention_head_dim=c["heads"], block_out_channels=c["blocks"],
                                layers_per_block=c["layers"], norm_num_groups=32,
                                down_block_types=("CrossAttnDownBlock2D",) * (len(c["blocks"]) - 1) + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(c["blocks"]) - 1))
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=c["text_width"],
                                        intermediate_size=c["text_width"] * 4, num_hidden_layers=c["text_layers"],
                                        num_attention_heads=max(1, c["text_width"] // 64),
                                        max_position_embeddings=77))
    pipe = StableDiffusionPipeline(
        vae=vae_for(c["blocks"], smoke, False, 0.18215), text_encoder=text, tokenizer=tok, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    out = folder / "sd15-random"
    pipe.to(torch.float16).save_pretrained(out)
    return out


def build_sdxl(folder: Path, s: dict, smoke: bool) -> Path:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    c = s["sdxl"]
    tok = tokenizer(folder / "tok-xl")
    width_1, width_2 = (32, 32) if smoke else (768, 1280)
    layers_1, layers_2 = (2, 2) if smoke else (12, 32)
    unet = UNet2DConditionModel(
        sample_size=c["px"] // (2 if smoke else 8), block_out_channels=c["blocks"], layers_per_block=c["layers"],
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(c["blocks"]) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(c["blocks"]) - 1) + ("UpBlock2D",),
        attention_head_dim=(2, 4) if smoke else (5, 10, 20), transformer_layers_per_block=(1, 1) if smoke else (1, 2, 10),
        cross_attention_dim=width_1 + width_2, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8 if smoke else 256,
        projection_class_embeddings_input_dim=(8 * 6 if smoke else 256 * 6) + width_2, norm_num_groups=32)
    text_1 = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=width_1, intermediate_size=width_1 * 4,
                                          num_hidden_layers=layers_1, num_attention_heads=max(1, width_1 // 64),
                                          max_position_embeddings=77))
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=width_2, intermediate_size=width_2 * 4, num_hidden_layers=layers_2,
        num_attention_heads=max(1, width_2 // 64), max_position_embeddings=77, projection_dim=width_2))
    pipe = StableDiffusionXLPipeline(
        vae=vae_for(c["blocks"], smoke, True, 0.13025), text_encoder=text_1, text_encoder_2=text_2, tokenizer=tok,
        tokenizer_2=tok, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"))
    out = folder / "sdxl-random"
    pipe.to(torch.float16).save_pretrained(out)
    return out


class Bench:
    def __init__(self, args, workdir: Path):
        self.args, self.workdir = args, workdir
        self.device = "cpu" if args.smoke else "cuda"
        self.figures: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}

    def config(self, model: str, **flags):
        from ldm_ui.config import AppConfig

        return AppConfig(models_dir=self.workdir / "models", outputs_dir=self.workdir / "outputs",
                         cache_dir=self.workdir / "cache", default_model=model, device=self.device,
                         dtype="float32" if self.args.smoke else "float16", preview_method="approx",
                         preview_every_n_steps=1, **flags)

    def engine(self, model: str, **flags):
        from ldm_ui.engine.engine import Engine

        engine = Engine(self.config(model, **flags)).start()
        engine.switch_model(model)
        return engine

    def request(self, model: str, px: int, **extra):
        from ldm_ui.requests import Txt2ImgRequest

        settings = dict(model=model, prompt=PROMPT, negative_prompt=NEGATIVE, sampler="Euler", cfg_scale=7.0,
                        steps=self.args.steps, width=px, height=px, seed=1)
        return Txt2ImgRequest(**{**settings, **extra})

    def sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def timed(self, run) -> float:
        self.sync()
        began = time.perf_counter()
        run()
        self.sync()
        return time.perf_counter() - began

    def speed(self, model: str, px: int) -> None:
        """bare vs engine vs UI, alternating; it/s = steps / wall time of one whole image."""
        from ldm_ui.engine.samplers import make_scheduler

        engine = self.engine(model)
        loaded = engine.models.current
        pipe = loaded.pipe
        request = self.request(model, px)

        def bare():
            pipe.scheduler = make_scheduler("Euler", loaded.base_scheduler_config)
            pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=self.args.steps, guidance_scale=7.0,
                 width=px, height=px, generator=torch.Generator("cpu").manual_seed(1), output_type="pil")

        paths = {"bare": bare, "engine": lambda: engine.generate(request)}
        ui = self.ui_client(engine, model, px)
        if ui is not None:
            paths["ui"] = ui
        for run in paths.values():  # warm-up
            run()
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(self.args.rounds):
            for name, run in paths.items():
                times[name].append(self.timed(run))
        its = {name: self.args.steps / statistics.median(t) for name, t in times.items()}
        result = {f"{name}_it_s": round(value, 3) for name, value in its.items()}
        result["engine_vs_bare"] = round(its["engine"] / its["bare"], 4)
        if "ui" in its:
            result["ui_vs_bare"] = round(its["ui"] / its["bare"], 4)
        self.figures[f"speed_{model}_{px}px"] = result
        print(model, px, result, flush=True)
        self.close_ui()
        engine.shutdown()

    def ui_client(self, engine, model: str, px: int):
        """A txt2img through the Gradio API of the real app, previews every step, timed client-side."""
        try:
            import app
            from gradio_client import Client

            from ldm_ui.ui.app import build_ui
            from browser_support import free_port

            config = engine.config
            config.port = free_port()
            demo = build_ui(engine)
            demo.launch(**app.launch_kwargs(config), prevent_thread_lock=True, quiet=True)
            self._demo = demo
            client = Client(f"http://127.0.0.1:{config.port}", verbose=False)
            return lambda: client.predict(prompt=PROMPT, negative_prompt=NEGATIVE, sampler="Euler",
                                          steps=self.args.steps, cfg_scale=7.0, width=px, height=px, seed=1,
                                          api_name="/txt2img")
        except Exception:  # noqa: BLE001 - the UI figure is reported as missing, the rest still runs
            self.figures.setdefault("errors", []).append(f"ui path ({model}): {traceback.format_exc(limit=3)}")
            return None

    def close_ui(self) -> None:
        demo = getattr(self, "_demo", None)
        if demo is not None:
            demo.close()
            self._demo = None

    def peak_memory(self, model: str, px: int) -> None:
        """Peak VRAM of one image by default, --medvram and --lowvram."""
        result = {}
        for mode, flags in (("default", {}), ("medvram", {"medvram": True}), ("lowvram", {"lowvram": True})):
            engine = self.engine(model, **flags)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            seconds = self.timed(lambda generate=engine.generate: generate(self.request(model, px, steps=4)))
            peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
            result[mode] = {"peak_gib": round(peak, 3), "seconds_4_steps": round(seconds, 2)}
            engine.shutdown()
            del engine
            self.release()
        self.figures[f"memory_{model}_{px}px"] = result
        print("memory", result, flush=True)

    def model_switch(self, small: str, large: str) -> None:
        engine = self.engine(large)
        self.release()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        engine.switch_model(large)
        large_alone = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
        engine.switch_model(small)
        self.release()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        engine.switch_model(large)  # through the queue, as the model selector does it
        switch = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
        engine.shutdown()
        self.release()
        self.figures["model_switch"] = {"large_alone_gib": round(large_alone, 3), "switch_peak_gib": round(switch, 3),
                                        "ratio": round(switch / large_alone, 4) if large_alone else None}
        print("switch", self.figures["model_switch"], flush=True)

    def compile_speedup(self, model: str, px: int) -> None:
        result = {}
        for name, flags in (("eager", {}), ("compile", {"compile_unet": True})):
            engine = self.engine(model, **flags)
            warmup = self.timed(lambda: engine.generate(self.request(model, px)))
            times = [self.timed(lambda: engine.generate(self.request(model, px))) for _ in range(self.args.rounds)]
            result[name] = {"warmup_s": round(warmup, 2), "it_s": round(self.args.steps / statistics.median(times), 3)}
            engine.shutdown()
            self.release()
        result["speedup"] = round(result["compile"]["it_s"] / result["eager"]["it_s"], 4)
        self.figures[f"compile_{model}_{px}px"] = result
        print("compile", result, flush=True)

    def lora_speed(self, model: str, px: int) -> None:
        from adapter_files import random_lora, write_kohya_lora

        engine = self.engine(model)
        pipe = engine.models.current.pipe
        write_kohya_lora(self.workdir / "models" / "Lora" / "bench.safetensors",
                         random_lora(pipe.unet, pipe.text_encoder, rank=16))
        base = self.request(model, px)
        with_lora = self.request(model, px, prompt=PROMPT + " <lora:bench:0.8>")
        engine.generate(with_lora)
        times = {"base": [], "lora": []}
        for _ in range(self.args.rounds):
            times["base"].append(self.timed(lambda: engine.generate(base)))
            times["lora"].append(self.timed(lambda: engine.generate(with_lora)))
        engine.shutdown()
        ratio = statistics.median(times["base"]) / statistics.median(times["lora"])
        self.figures[f"lora_{model}_{px}px"] = {"lora_vs_base_speed": round(ratio, 4)}
        print("lora", self.figures[f"lora_{model}_{px}px"], flush=True)

    def release(self) -> None:
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-benchmark.json"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: checks the script, not speed")
    parser.add_argument("--skip", action="append", default=[],
                        help="parts to leave out: speed, memory, switch, compile, lora")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA GPU (or --smoke to check the script on the CPU)")
    s = sizes(args.smoke)
    args.steps = s["steps"]
    workdir = Path(tempfile.mkdtemp(prefix="ldm-gpu-bench-"))
    began = time.perf_counter()
    with torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"):
        torch.manual_seed(0)
        sd15 = build_sd15(workdir / "models" / "diffusers", s, args.smoke).name
        sdxl = build_sdxl(workdir / "models" / "diffusers", s, args.smoke).name
    bench = Bench(args, workdir)
    bench.figures["build_s"] = round(time.perf_counter() - began, 1)
    parts = [("speed", lambda: bench.speed(sd15, s["sd15"]["px"])),
             ("speed", lambda: bench.speed(sdxl, s["sdxl"]["px"])),
             ("memory", lambda: bench.peak_memory(sdxl, s["sdxl"]["px"])),
             ("switch", lambda: bench.model_switch(sd15, sdxl)),
             ("lora", lambda: bench.lora_speed(sd15, s["sd15"]["px"])),
             ("compile", lambda: bench.compile_speedup(sd15, s["sd15"]["px"]))]
    for name, run in parts:
        if name in args.skip:
            continue
        try:
            run()
        except Exception:  # noqa: BLE001 - one failing part must not cost the figures of the others
            bench.figures.setdefault("errors", []).append(f"{name}: {traceback.format_exc(limit=5)}")
            print(f"{name} failed:\n{traceback.format_exc()}", flush=True)
        args.out.write_text(json.dumps(bench.figures, indent=1))  # after every part: a timeout keeps what ran
    bench.figures["total_s"] = round(time.perf_counter() - began, 1)
    args.out.write_text(json.dumps(bench.figures, indent=1))
    print(json.dumps(bench.figures, indent=1))


if __name__ == "__main__":
    main()
