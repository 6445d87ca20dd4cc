"""Request and response bodies of the /sdapi/v1 routes, with AUTOMATIC1111's field names and defaults.

Unknown fields are ignored, as AUTOMATIC1111 does, so clients written for its newer or older versions work.
Values are range-checked when they become typed requests (ldm_ui/api/translate.py), whose messages name the
value and what is allowed; here only the JSON types are checked.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class GenerationBody(_Body):
    """The fields txt2img and img2img share (AUTOMATIC1111's StableDiffusionProcessing)."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = Field(default=None, description="names from /prompt-styles, merged into the prompts "
                                                                "in this order, as the UI's styles picker does")
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = "Euler"  # used when sampler_name is not given
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    script_name: str | None = None
    script_args: list = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = None
    # the SDXL refiner (ldm_ui/engine/tasks/refine.py): a model name or /sd-models title, None/"None" for none
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None  # None: 0.8, as the UI's default


class Txt2ImgBody(GenerationBody):
    # hires fix (ldm_ui/engine/tasks/hires.py): AUTOMATIC1111's fields, turned into a HiresFix by translate.py
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""


class Img2ImgBody(GenerationBody):
    init_images: list[str] | None = None
    resize_mode: int = 0  # 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale
    denoising_strength: float = 0.75
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    inpainting_fill: int = 0  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = True  # True: only the masked area (plus padding) is worked on
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    include_init_images: bool = False


class GenerationResponse(_Body):
    images: list[str] | None = Field(default=None, description="base64 PNGs, each with its `parameters` chunk")
    parameters: dict
    info: str = Field(description="a JSON string: seed, all_seeds, infotexts, ...")


class ProgressResponse(_Body):
    progress: float = Field(description="0..1 over the caller's current job")
    eta_relative: float
    state: dict
    current_image: str | None = Field(default=None, description="the latest live preview, base64 PNG")
    textinfo: str | None = None
    current_task: str | None = None


class PNGInfoBody(_Body):
    image: str = Field(description="a base64 image (a data: URL works too)")


class PNGInfoResponse(_Body):
    info: str
    items: dict
    parameters: dict


class ExtrasBody(_Body):
    """AUTOMATIC1111's Extras fields (ExtrasBaseRequest): one pixel upscaler, or two blended."""

    resize_mode: int = Field(default=0, description="0: scale by upscaling_resize; 1: scale to upscaling_resize_w x h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(default=0, description="face restoration is not available in ldm-ui: 0 only")
    codeformer_visibility: float = Field(default=0, description="face restoration is not available in ldm-ui: 0 only")
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str | None = "None"
    upscaler_2: str | None = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtrasSingleImageBody(ExtrasBody):
    image: str = Field(default="", description="a base64 image (a data: URL works too)")


class FileData(_Body):
    data: str = Field(description="a base64 image")
    name: str = ""


class ExtrasBatchImagesBody(ExtrasBody):
    imageList: list[FileData] = Field(default_factory=list)  # noqa: N815 - AUTOMATIC1111's field name


class ExtrasSingleImageResponse(_Body):
    html_info: str
    image: str = Field(description="base64 PNG with its `parameters` chunk")


class ExtrasBatchImagesResponse(_Body):
    html_info: str
    images: list[str]
