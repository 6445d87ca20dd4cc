"""Each sampler name runs the scheduler users expect from it (AUTOMATIC1111's names, diffusers' classes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldm_ui.engine.samplers import SAMPLER_NAMES, make_scheduler, sampler_is_deterministic
from ldm_ui.requests import Txt2ImgRequest

# written out here, not read from the table: a name mapped to the wrong scheduler must fail
EXPECTED = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler",
                            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {"set_alpha_to_one": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
# samplers that add fresh noise at every step: their image depends on the generator after the initial noise
STOCHASTIC = {"Euler a", "DPM++ 2M SDE Karras", "DPM++ SDE Karras", "LCM"}


def test_every_sampler_name_is_covered():
    assert set(EXPECTED) == set(SAMPLER_NAMES)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_sampler_name_maps_to_its_scheduler_class_and_config(name, engine):
    base = engine.models.get(None).base_scheduler_config
    scheduler = make_scheduler(name, base, seed=1)
    class_name, config = EXPECTED[name]
    # the previewing subclass keeps the diffusers class as its direct base
    assert type(scheduler).__mro__[1].__name__ == class_name
    for key, value in config.items():
        assert scheduler.config[key] == value, (name, key, scheduler.config[key])
    # the model's training schedule and prediction type are kept
    assert scheduler.config["prediction_type"] == base["prediction_type"]
    assert scheduler.config["beta_schedule"] == base["beta_schedule"]


def test_karras_sigmas_are_really_used():
    """A config flag is not enough: the sigmas of a Karras schedule differ from the default spacing."""
    base = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    plain, karras = make_scheduler("DPM++ 2M", base), make_scheduler("DPM++ 2M Karras", base)
    plain.set_timesteps(10)
    karras.set_timesteps(10)
    assert not torch.allclose(plain.sigmas, karras.sigmas)


def test_different_samplers_give_different_images(engine):
    images = {}
    for name in SAMPLER_NAMES:
        finished = engine.generate(Txt2ImgRequest(prompt="a red circle on a blue background", steps=4, seed=42,
                                                  sampler=name), timeout=120)
        images[name] = np.asarray(finished.images[0], dtype=np.int16)
    names = list(images)
    same = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if np.array_equal(images[a], images[b])]
    assert same == []


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_deterministic_means_no_noise_after_the_first(name, engine):
    """Given the same initial latents, a deterministic sampler ignores the generator; a stochastic one does not."""
    model = engine.models.get(None)
    pipe = model.pipe
    pipe.scheduler = make_scheduler(name, model.base_scheduler_config, seed=7)
    shape = (1, pipe.unet.config.in_channels, 8, 8)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    def run(generator_seed: int, scheduler_seed: int = 7) -> np.ndarray:
        pipe.scheduler = make_scheduler(name, model.base_scheduler_config, seed=scheduler_seed)
        out = pipe("a red circle", num_inference_steps=4, latents=latents.clone(), width=64, height=64,
                   generator=torch.Generator().manual_seed(generator_seed), output_type="np").images[0]
        return out

    a, b = run(1, 7), run(2, 8)
    assert np.array_equal(a, b) == sampler_is_deterministic(name), name
    assert sampler_is_deterministic(name) == (name not in STOCHASTIC)
    assert np.array_equal(run(1, 7), a)  # and the same seeds reproduce


def test_each_scheduler_is_a_fresh_one_with_its_own_seed(engine):
    """Schedulers are copied from a kept template: the copies share no state, and DPM++ SDE's Brownian tree
    takes each call's seed (not the seed the template was first made with)."""
    config = engine.models.get(None).base_scheduler_config
    first, second = make_scheduler("DPM++ 2M Karras", config), make_scheduler("DPM++ 2M Karras", config)
    first.set_timesteps(5)
    second.set_timesteps(9)
    assert first is not second and len(first.timesteps) == 5 and len(second.timesteps) == 9
    first.initial_noise = torch.zeros(1)
    assert make_scheduler("DPM++ 2M Karras", config).initial_noise is None
    seeded = [make_scheduler("DPM++ SDE Karras", config, seed=s) for s in (11, 12, 11)]
    assert [s.noise_sampler_seed for s in seeded] == [11, 12, 11]
    assert [s.config.noise_sampler_seed for s in seeded] == [11, 12, 11]
