"""The public API's endpoint names and parameter names, pinned: scripts call /txt2img(prompt=..., steps=...).

Recorded with gradio_client's view_api before the tabs declared their inputs as tables (issue 12); every tab now
derives its handler's signature from its InputTable, and this test fails if a row is renamed, moved or dropped.
"""

from __future__ import annotations

import pytest

from ldm_ui.ui.inputs import Input, InputTable

GENERATION = ["prompt", "negative_prompt", "sampler", "steps", "cfg_scale", "width", "height", "seed", "batch_count",
              "batch_size", "clip_skip"]
VARIATION = ["variation_seed", "variation_strength", "resize_seed_from_width", "resize_seed_from_height"]
HIRES = ["hires_enabled", "hires_upscaler", "hires_scale", "hires_resize_width", "hires_resize_height", "hires_steps",
         "hires_denoising_strength", "hires_sampler", "hires_prompt", "hires_negative_prompt"]
SHARED = ["model", "preview_method", "preview_every"]
REFINER = ["refiner_checkpoint", "refiner_switch_at"]
UNIT = ["enabled", "image", "preprocessor", "model", "weight", "guidance_start", "guidance_end", "canny_low",
        "canny_high"]
CONTROLNET = [f"controlnet{index}_{name}" for index in (1, 2, 3) for name in UNIT]
EXPECTED = {
    "/txt2img": GENERATION + VARIATION + SHARED + HIRES + CONTROLNET + REFINER,
    "/img2img": ["init_image", "strength", "resize_mode"] + GENERATION + SHARED + CONTROLNET + VARIATION + REFINER,
    "/inpaint": ["editor", "uploaded_mask", "strength", "resize_mode", "mask_blur", "invert_mask", "masked_content",
                 "inpaint_area", "padding"] + GENERATION + SHARED + CONTROLNET + VARIATION,
    "/interpolate": ["mode", "prompt_b", "seed_b", "frames", "easing", "fps", "ping_pong", "latent_mix",
                     "strength"] + GENERATION + SHARED + ["image_a", "image_b"],
    "/inspect_latents": ["picture", "model"],
    "/outpaint": ["image", "left", "right", "up", "down", "fill", "overlap", "mask_blur", "strength"] + GENERATION
                 + SHARED,
    "/extras": ["source", "image", "files", "folder", "resize_mode", "scale", "width", "height", "upscaler",
                "upscaler_2", "visibility"],
    "/pnginfo": ["path"],
    "/xyplot": ["prompt_text", "negative_text", "x_name", "x_text", "y_name", "y_text", "sampler_name",
                "steps_value", "cfg_value", "width_value", "height_value", "seed_value", "model"],
    "/set_vae": ["name", "model_name"],
}
# parameters a script may leave out because the handler's signature gives them a default
OPTIONAL = {"/txt2img": HIRES + CONTROLNET + REFINER, "/img2img": CONTROLNET + VARIATION + REFINER, "/inpaint": CONTROLNET + VARIATION,
            "/interpolate": ["image_a", "image_b"]}


@pytest.fixture(scope="module")
def api_info(models_dir, tmp_path_factory):
    import app
    from ldm_ui.config import AppConfig

    root = tmp_path_factory.mktemp("api-names")
    engine, demo = app.create_app(AppConfig(models_dir=models_dir, outputs_dir=root / "outputs",
                                            cache_dir=root / "cache", default_model="tiny-sd"))
    try:
        yield demo.get_api_info()["named_endpoints"]
    finally:
        engine.shutdown()


def test_endpoint_and_parameter_names_are_unchanged(api_info):
    found = {name: [p["parameter_name"] for p in endpoint["parameters"]] for name, endpoint in api_info.items()}
    assert found == EXPECTED


@pytest.mark.parametrize("endpoint", sorted(OPTIONAL))
def test_optional_parameters_keep_their_defaults(api_info, endpoint):
    parameters = {p["parameter_name"]: p for p in api_info[endpoint]["parameters"]}
    for name in OPTIONAL[endpoint]:
        assert parameters[name]["parameter_has_default"], name
    if endpoint == "/txt2img":
        assert parameters["hires_enabled"]["parameter_default"] is False
        assert parameters["hires_upscaler"]["parameter_default"] == "Latent"
    if endpoint != "/interpolate":
        assert parameters["controlnet1_enabled"]["parameter_default"] is False
        assert parameters["controlnet2_preprocessor"]["parameter_default"] == "canny"


def test_a_table_refuses_a_repeated_name_and_a_required_input_after_an_optional_one():
    with pytest.raises(ValueError, match="repeated: \\['seed'\\]"):
        InputTable([("seed", None), ("steps", None)], [("seed", None)])
    with pytest.raises(ValueError, match="API default"):
        InputTable([Input("image", None, None), ("steps", None)])


def test_the_handler_passes_values_by_name_in_table_order():
    table = InputTable([("b", "widget-b"), ("a", "widget-a")], [Input("c", "widget-c", 3)])
    seen = []
    handler = table.handler(lambda values: iter([seen.append(values)]))
    list(handler(1, 2, 3))
    assert seen == [{"b": 1, "a": 2, "c": 3}]
    assert table.components == ["widget-b", "widget-a", "widget-c"]
