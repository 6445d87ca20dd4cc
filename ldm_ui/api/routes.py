"""The /sdapi/v1 routes: a FastAPI app that app.py mounts on Gradio's, over the same Engine and queue.

Generation handlers are plain functions, so FastAPI runs each in its thread pool while the job waits in the
engine's one queue beside the browsers' jobs, in arrival order.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import anyio

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from PIL import Image, UnidentifiedImageError
from starlette.middleware import Middleware

from ldm_ui import user_settings
from ldm_ui.requests import RequestError, check_image

from ldm_ui.api import extras, listings
from ldm_ui.api.auth import ApiAuth, BodyLimit
from ldm_ui.api.jobs import ApiJobs, JobFailedError
from ldm_ui.api.results import generation_response
from ldm_ui.api.stream import task_events
from ldm_ui.api.schemas import (
    ExtrasBatchImagesBody, ExtrasBatchImagesResponse, ExtrasSingleImageBody, ExtrasSingleImageResponse,
    GenerationResponse, Img2ImgBody, PNGInfoBody, PNGInfoResponse, ProgressResponse, Txt2ImgBody,
)
from ldm_ui.api.settings import ApiSettings, NotFound, check_clip_skip, resolve_vae
from ldm_ui.api.translate import img2img_request, resolve_model, txt2img_request

PREFIX = "/sdapi/v1"
MAX_WAITING_REQUESTS = 256  # generation requests waiting for their job at once; more wait for a free slot
# AUTOMATIC1111's names of the remembered saving settings -> ldm_ui/user_settings.py's (saved like the Settings tab's)
SAVE_OPTIONS = {"samples_format": "samples_format", "jpeg_quality": "jpeg_quality",
                "samples_filename_pattern": "filename_pattern", "save_txt": "save_txt"}
SETTABLE_OPTIONS = ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", *SAVE_OPTIONS)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    # AUTOMATIC1111's error body: error, detail, body, errors
    return JSONResponse(status_code=status, content={"error": kind, "detail": message, "body": "", "errors": message})


def create_api(config, engine, gradio_app=lambda: None) -> FastAPI:
    """The /sdapi/v1 app. `gradio_app()` returns Gradio's FastAPI app once launched (for the session login)."""
    auth = ApiAuth(config.api_auth or config.auth, bool(config.auth), gradio_app)
    jobs = ApiJobs(engine)
    settings = ApiSettings()

    async def caller(request: Request) -> str | None:  # async: a check this quick needs no worker thread
        return auth.user(request)

    api = FastAPI(title="ldm-ui: AUTOMATIC1111-compatible API", version="1", openapi_url=None, docs_url=None,
                  redoc_url=None, dependencies=[Depends(caller)],
                  middleware=[Middleware(BodyLimit, max_bytes=4 * config.max_file_size_mb * 1024 * 1024)])

    @api.exception_handler(NotFound)
    def not_found(_, error: NotFound):
        return _error(404, "NotFound", str(error))

    @api.exception_handler(RequestError)
    def bad_request(_, error: RequestError):
        return _error(422, "RequestError", str(error))

    @api.exception_handler(JobFailedError)
    def job_failed(_, error: JobFailedError):
        return _error(500, "JobFailed", str(error))

    # ---- generation

    # Waiting for a job blocks a thread; these threads come from a limiter of their own, so a long queue of API
    # jobs never takes the threads that /progress, /interrupt or Gradio's own routes run on.
    waiting = anyio.CapacityLimiter(MAX_WAITING_REQUESTS)

    def generate(translate, body, user: str | None) -> dict[str, Any]:
        translation = translate(body, engine, settings)
        overrides = translation.overrides
        if "clip_skip" in overrides.remember:  # override_settings_restore_afterwards false: it stays
            settings.set_clip_skip(overrides.remember["clip_skip"])
        for request in overrides.before:
            jobs.settle(request)
        outputs, interrupted = jobs.run(translation.request, user, body.force_task_id, then=overrides.after,
                                        notes=translation.ignored)
        return generation_response(body, translation.request, outputs, translation.ignored, interrupted,
                                   engine.config.save_options)

    @api.post("/txt2img", response_model=GenerationResponse)
    async def txt2img(body: Txt2ImgBody, user: str | None = Depends(caller)) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(generate, txt2img_request, body, user, limiter=waiting)

    @api.post("/img2img", response_model=GenerationResponse)
    async def img2img(body: Img2ImgBody, user: str | None = Depends(caller)) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(generate, img2img_request, body, user, limiter=waiting)

    def upscale(to_request, to_response, body, user: str | None) -> dict[str, Any]:
        outputs, interrupted = jobs.run(to_request(body, engine), user)
        return to_response(outputs, interrupted)

    @api.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(body: ExtrasSingleImageBody, user: str | None = Depends(caller)) -> dict[str, Any]:
        """The Extras tab's upscale of one image (upscaler_1, optionally blended with upscaler_2)."""
        return await anyio.to_thread.run_sync(upscale, extras.single_image_request, extras.single_image_response,
                                              body, user, limiter=waiting)

    @api.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extra_batch_images(body: ExtrasBatchImagesBody, user: str | None = Depends(caller)) -> dict[str, Any]:
        """The Extras tab's upscale of several images, in one job."""
        return await anyio.to_thread.run_sync(upscale, extras.batch_images_request, extras.batch_images_response,
                                              body, user, limiter=waiting)

    @api.get("/progress", response_model=ProgressResponse)
    async def progress(skip_current_image: bool = False, user: str | None = Depends(caller)) -> dict[str, Any]:
        return jobs.progress(user, with_image=not skip_current_image)

    @api.post("/interrupt")
    async def interrupt(user: str | None = Depends(caller)) -> dict[str, Any]:
        return {"interrupted": jobs.stop(user)}

    @api.post("/skip")
    async def skip(user: str | None = Depends(caller)) -> dict[str, Any]:
        return {"skipped": jobs.stop(user, skip=True)}

    @api.get("/stream/{task_id}")
    async def stream(task_id: str, user: str | None = Depends(caller)) -> StreamingResponse:
        """Server-sent events of one of the caller's tasks (start it with force_task_id): queued, progress,
        preview, result, then done, cancelled or failed."""
        return StreamingResponse(task_events(jobs, task_id, user), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ---- listings

    api.get("/sd-models")(lambda: listings.sd_models(engine))
    api.get("/samplers")(listings.samplers)
    api.get("/schedulers")(listings.schedulers)
    api.get("/loras")(lambda: listings.loras(engine.config))
    api.get("/cmd-flags")(lambda: listings.cmd_flags(engine.config))
    api.get("/memory")(listings.memory)
    api.get("/upscalers")(lambda: listings.upscalers(engine))
    api.get("/latent-upscale-modes")(listings.latent_upscale_modes)
    api.get("/embeddings")(lambda: listings.embeddings(engine))
    api.get("/sd-vae")(lambda: listings.sd_vae(engine.config))
    api.get("/prompt-styles")(lambda: listings.prompt_styles(engine.config))

    @api.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        engine.models.list_models()  # the folders are read on every listing; nothing is cached to refresh

    @api.post("/refresh-loras")
    def refresh_loras() -> None:
        listings.loras(engine.config)

    @api.get("/options")
    def get_options() -> dict[str, Any]:
        return listings.options(engine, settings)

    @api.post("/options")
    def set_options(values: dict[str, Any]) -> dict[str, Any]:
        from ldm_ui.requests import LoadModelRequest, SetVaeRequest

        ignored = [key for key in values if key not in SETTABLE_OPTIONS]
        # every name and value is checked before anything changes
        model = resolve_model(engine, values["sd_model_checkpoint"]) if values.get("sd_model_checkpoint") else None
        vae = resolve_vae(engine.config, values["sd_vae"]) if values.get("sd_vae") is not None else None
        clip_skip = values.get("CLIP_stop_at_last_layers")
        if clip_skip is not None:
            check_clip_skip(clip_skip)
        saving = {SAVE_OPTIONS[key]: values[key] for key in SAVE_OPTIONS if key in values}
        try:
            user_settings.check_changes(engine.config, **saving)
        except ValueError as error:
            raise RequestError(str(error)) from None
        if model:
            jobs.settle(LoadModelRequest(model=model))  # through the queue, after the jobs already waiting
        if vae:
            current = engine.models.current
            jobs.settle(SetVaeRequest(vae=vae, model=current.entry.name if current else None))
        if clip_skip is not None:
            settings.set_clip_skip(clip_skip)
        if saving:  # remembered, as the Settings tab's Save remembers them (AUTOMATIC1111 saves its options too)
            user_settings.update(engine.config, **saving)
        # AUTOMATIC1111 answers null; the names of options ldm-ui does not have are reported, not silently dropped
        return {"ignored": ignored} if ignored else {}

    @api.post("/png-info", response_model=PNGInfoResponse)
    def png_info(body: PNGInfoBody) -> dict[str, Any]:
        from ldm_ui.metadata import read_infotext

        data = body.image.strip().partition(",")[2] if body.image.strip().startswith("data:") else body.image
        try:
            raw = base64.b64decode(data)
            with Image.open(io.BytesIO(raw)) as image:
                check_image("image", image)  # its size from the header, before a pixel is decoded
                image.load()  # text chunks after the pixel data are read with the pixels
                text = read_infotext(image)
                other = {k: v for k, v in image.info.items() if k != "parameters" and isinstance(v, (str, int, float))}
        except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as error:
            raise RequestError(f"image could not be read as an image ({error})") from None
        return listings.png_info(text, other)

    # ---- the description of these routes only, behind the same login

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return get_openapi(title=api.title, version=api.version, routes=api.routes, servers=[{"url": PREFIX}])

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{PREFIX}/openapi.json", title=api.title)

    api.state.jobs = jobs
    return api
