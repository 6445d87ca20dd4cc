"""The SDXL refiner on tiny SDXL-shaped models: the base denoises to the switch, the refiner finishes the same latents.

tiny-sdxl is a base (two text encoders); tiny-refiner has only the second text encoder and aesthetic-score time
ids, as stabilityai's refiner; tiny-sd is SD1-shaped, which the refiner must refuse. With 10 steps of the tiny
models' "leading" Euler schedule (901, 801, ..., 1), a switch at 0.7 (timestep 300) leaves 7 steps to the base and
3 to the refiner.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldm_ui.config import AppConfig
from ldm_ui.engine.engine import Engine, JobFailed
from ldm_ui.metadata import generation_fields, parse_infotext
from ldm_ui.requests import (
    Cancelled, Failed, Img2ImgRequest, InpaintRequest, Progress, RefinerSettings, RequestError, Txt2ImgRequest,
)
from tiny_models import build_refiner_models


@pytest.fixture(scope="module")
def sdxl_models(tmp_path_factory) -> Path:
    return build_refiner_models(tmp_path_factory.mktemp("sdxl-models"))


@pytest.fixture(scope="module")
def engine(sdxl_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("refiner-run")
    config = AppConfig(models_dir=sdxl_models, outputs_dir=root / "outputs", cache_dir=root / "cache",
                       default_model="tiny-sdxl", preview_interval_s=0)
    engine = Engine(config).start()
    yield engine
    engine.shutdown()


def txt2img(switch_at: float | None, refiner: str = "tiny-refiner", **changes) -> Txt2ImgRequest:
    settings = None if switch_at is None else RefinerSettings(checkpoint=refiner, switch_at=switch_at)
    values = dict(prompt="a red cat", steps=10, seed=3, width=64, height=64, refiner=settings)
    return Txt2ImgRequest(**{**values, **changes})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


class CallCounter:
    """Counts forward calls of a module (torch's forward pre-hooks), for as long as it is attached."""

    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.calls += 1

    def detach(self) -> None:
        self.handle.remove()


def run_events(engine, request):
    return list(engine.submit(request).events())


def test_switch_at_one_is_the_base_alone_and_loads_no_refiner(engine):
    alone = engine.generate(txt2img(None))
    at_one = engine.generate(txt2img(1.0))
    assert np.array_equal(pixels(alone.images[0]), pixels(at_one.images[0]))
    assert engine.models.refiner.current is None
    assert "Refiner" not in at_one.outputs[0].infotext


def test_refiner_finishes_the_base_from_the_switch(engine):
    alone = engine.generate(txt2img(None))
    refined = engine.generate(txt2img(0.7))  # loads the refiner
    assert engine.models.refiner.current is not None
    assert engine.models.refiner.current.entry.name == "tiny-refiner"
    assert engine.models.current.entry.name == "tiny-sdxl"  # the base stays loaded beside it
    difference = np.abs(pixels(alone.images[0]) - pixels(refined.images[0])).mean()
    assert difference > 0.5  # mean over 0-255 channels; the refined image is its own

    base_calls = CallCounter(engine.models.current.pipe.unet)
    refiner_calls = CallCounter(engine.models.refiner.current.pipe.unet)
    try:
        events = run_events(engine, txt2img(0.7))
    finally:
        base_calls.detach()
        refiner_calls.detach()
    # one U-Net call per step (the guided pair goes as one batch): 7 before the switch, 3 after it
    assert (base_calls.calls, refiner_calls.calls) == (7, 3)
    progress = [(e.step, e.steps) for e in events if isinstance(e, Progress) and e.steps]
    assert progress == [(step, 10) for step in range(1, 11)]  # one count over both stages
    finished = events[-1]
    assert np.array_equal(pixels(finished.images[0]), pixels(refined.images[0]))  # same seed, same image
    assert "3 steps after the base's 7" in finished.summary


def test_infotext_names_the_refiner_and_reads_back(engine):
    finished = engine.generate(txt2img(0.7))
    info = parse_infotext(finished.outputs[0].infotext)
    refiner = engine.models.refiner.current
    assert refiner.model_hash
    assert info.settings["Refiner"] == f"tiny-refiner [{refiner.model_hash}]"
    assert info.settings["Refiner switch at"] == "0.7"
    fields, notes = generation_fields(info)
    assert (fields["refiner_checkpoint"], fields["refiner_switch_at"]) == ("tiny-refiner", 0.7)
    assert not notes


def test_interrupt_in_either_stage(engine):
    refiner_model = engine.models.refiner.current or engine.models.refiner.get(
        "tiny-refiner", engine.models.current, lambda message: None)
    for stop_at, refiner_steps in ((2, 0), (8, 1)):
        def stop(info, stop_at=stop_at):  # a step hook runs on the worker, right after the step (0-based)
            info.stop = info.step + 1 == stop_at

        counter = CallCounter(refiner_model.pipe.unet)
        engine.step_hooks.append(stop)
        try:
            events = run_events(engine, txt2img(0.7))
        finally:
            engine.step_hooks.remove(stop)
            counter.detach()
        assert isinstance(events[-1], Cancelled), events[-1]
        assert f"at step {stop_at}/10" in events[-1].message
        assert counter.calls == refiner_steps
    # the engine goes on serving, refiner and all
    assert engine.generate(txt2img(0.7)).images


def test_img2img_strength_spans_the_whole_schedule(engine):
    init = engine.generate(txt2img(None)).images[0]
    # strength 0.6 of 10 steps: timesteps 501..1; the switch at 0.5 (timestep 500) leaves 1 to the base, 5 after
    # strength 0.3: timesteps 201..1, all below the switch: the refiner runs the img2img itself
    for strength, expected in ((0.6, (1, 5)), (0.3, (0, 3))):
        alone = engine.generate(Img2ImgRequest(prompt="a red cat", steps=10, seed=3, init_image=init,
                                               strength=strength))  # frees the refiner: loaded again below
        refiner_model = engine.models.refiner.get("tiny-refiner", engine.models.current, lambda message: None)
        request = Img2ImgRequest(prompt="a red cat", steps=10, seed=3, init_image=init, strength=strength,
                                 refiner=RefinerSettings(checkpoint="tiny-refiner", switch_at=0.5))
        base_calls = CallCounter(engine.models.current.pipe.unet)
        refiner_calls = CallCounter(refiner_model.pipe.unet)
        try:
            events = run_events(engine, request)
        finally:
            base_calls.detach()
            refiner_calls.detach()
        assert not isinstance(events[-1], Failed), events[-1]
        assert (base_calls.calls, refiner_calls.calls) == expected
        total = sum(expected)
        assert [(e.step, e.steps) for e in events if isinstance(e, Progress) and e.steps] == \
            [(step, total) for step in range(1, total + 1)]
        assert "Refiner switch at: 0.5" in events[-1].outputs[0].infotext
        assert not np.array_equal(pixels(alone.images[0]), pixels(events[-1].images[0]))


def test_a_non_sdxl_refiner_is_refused_with_its_name(engine):
    with pytest.raises(JobFailed) as failed:
        engine.generate(txt2img(0.8, refiner="tiny-sd"))
    message = str(failed.value)
    assert "'tiny-sd'" in message and "not an SDXL model" in message and "SDXL refiner" in message
    # a non-SDXL base cannot hand its latents to an SDXL refiner either
    with pytest.raises(JobFailed, match="the model 'tiny-sd' is not an SDXL model"):
        engine.generate(txt2img(0.8, model="tiny-sd"))
    with pytest.raises(RequestError, match="unknown model 'no-such-refiner'"):
        engine.submit(txt2img(0.8, refiner="no-such-refiner"))
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(RequestError, match="refiner switch at"):
            RefinerSettings(checkpoint="tiny-refiner", switch_at=bad)
    with pytest.raises(RequestError, match="inpainting runs without one"):
        InpaintRequest(prompt="x", init_image=Image.new("RGB", (64, 64)), mask=Image.new("L", (64, 64), 255),
                       refiner=RefinerSettings(checkpoint="tiny-refiner"))
    from ldm_ui.requests import ControlNetUnit

    image = Image.new("RGB", (64, 64))
    with pytest.raises(JobFailed, match="the refiner and ControlNet units cannot run together in img2img"):
        engine.generate(Img2ImgRequest(prompt="x", steps=4, init_image=image,
                                       controlnets=(ControlNetUnit(model="any", image=image),),
                                       refiner=RefinerSettings(checkpoint="tiny-refiner")))
    assert engine.generate(txt2img(None)).images  # still serving


def test_switching_the_refiner_off_frees_it(engine):
    engine.generate(txt2img(0.7, model="tiny-sdxl"))
    held = weakref.ref(engine.models.refiner.current.pipe.unet)
    engine.generate(txt2img(None))
    gc.collect()
    assert engine.models.refiner.current is None
    assert held() is None
    assert engine.models.current.entry.name == "tiny-sdxl"


def test_refiner_then_hires_fix_and_the_base_as_its_own_refiner(engine):
    from ldm_ui.requests import HiresFix

    events = run_events(engine, txt2img(0.7, hires=HiresFix(upscaler="Latent", scale=2.0, steps=4,
                                                            denoising_strength=0.5)))
    finished = events[-1]
    assert finished.images[0].size == (128, 128)
    infotext = finished.outputs[0].infotext
    assert "Refiner: tiny-refiner [" in infotext and "Hires upscaler: Latent" in infotext
    refined = [(e.step, e.steps) for e in events if isinstance(e, Progress) and e.steps and not e.phase]
    assert refined == [(step, 10) for step in range(1, 11)]  # base and refiner, then the hires pass on its own
    assert any(e.phase == "hires" for e in events if isinstance(e, Progress))

    # the loaded model picked as its own refiner: shared, not loaded twice
    finished = engine.generate(txt2img(0.7, refiner="tiny-sdxl"))
    assert engine.models.refiner.current is engine.models.current
    assert "Refiner: tiny-sdxl [" in finished.outputs[0].infotext


def test_the_refiner_loads_with_the_base_models_settings(sdxl_models, tmp_path):
    """The refiner goes through the manager's own loader: the same dtype (and, on CUDA, --medvram/--lowvram
    offload) as the base."""
    import torch

    from ldm_ui.engine.models import ModelManager

    config = AppConfig(models_dir=sdxl_models, outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache",
                       default_model="tiny-sdxl", dtype="bfloat16", medvram=True)
    manager = ModelManager(config)
    base = manager.get("tiny-sdxl")
    refiner = manager.refiner.get("tiny-refiner", base, lambda message: None)
    assert base.pipe.unet.dtype == refiner.pipe.unet.dtype == torch.bfloat16
    assert (refiner.device, refiner.offloaded, refiner.family) == (base.device, base.offloaded, "sdxl")
    manager.refiner.release()
    assert manager.refiner.current is None and manager.current is base


def test_a_prompt_edit_before_the_switch_reaches_the_refiner(engine):
    """The refiner's first step reads the prompt as it is at that step of the schedule (an edit the base made at
    step 5 of 10 holds in the refiner from step 7), through its own text encoder."""
    import torch

    from ldm_ui.engine.prompt_conditioning import call_kwargs_for
    from ldm_ui.prompts.conditioning import build_conditioning

    engine.generate(txt2img(0.7))  # the model and the refiner loaded by a job
    pipe = engine.models.refiner.current.pipeline("AutoPipelineForImage2Image")
    edited = build_conditioning(pipe, ["[a red cat:a blue dog:0.5]"], [""], 10)
    plain = build_conditioning(pipe, ["a blue dog"], [""], 10)
    first = call_kwargs_for(edited, 7)
    assert torch.equal(first["prompt_embeds"], plain.pipeline_kwargs()["prompt_embeds"])
    assert torch.equal(first["pooled_prompt_embeds"], plain.pipeline_kwargs()["pooled_prompt_embeds"])
    assert not torch.equal(call_kwargs_for(edited)["prompt_embeds"], first["prompt_embeds"])
    assert first["prompt_embeds"].shape[-1] == 24  # the refiner's one (second) text encoder


def test_a_model_held_as_the_refiner_becomes_the_model_without_a_second_load(sdxl_models, tmp_path):
    from ldm_ui.engine.models import ModelManager

    manager = ModelManager(AppConfig(models_dir=sdxl_models, outputs_dir=tmp_path / "o", cache_dir=tmp_path / "c"))
    manager.get("tiny-sd")
    refiner = manager.refiner.get("tiny-sdxl", manager.current, lambda message: None)  # an SDXL model as refiner
    reports = []
    assert manager.get("tiny-sdxl", reports.append) is refiner  # picked as the model: the same weights
    assert reports == []  # nothing loaded
    assert manager.refiner.current is manager.current
