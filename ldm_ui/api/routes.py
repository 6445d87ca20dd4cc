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

from ldm_ui.requests import RequestError, check_image

from ldm_ui.api import listings
from ldm_ui.api.auth import ApiAuth, BodyLimit
from ldm_ui.api.jobs import ApiJobs, JobFailedError
from ldm_ui.api.results import generation_response
from ldm_ui.api.stream import task_events
from ldm_ui.api.schemas import (
    GenerationResponse, Img2ImgBody, PNGInfoBody, PNGInfoResponse, ProgressResponse, Txt2ImgBody,
)
from ldm_ui.api.translate import NotFound, img2img_request, resolve_model, txt2img_request

PREFIX = "/sdapi/v1"
MAX_WAITING_REQUESTS = 256  # generation requests waiting for their job at once; more wait for a free slot
NOT_BUILT = {
    "extra-single-image": "upscalers and face restoration (the Extras tab) are not built yet in ldm-ui",
    "extra-batch-images": "upscalers and face restoration (the Extras tab) are not built yet in ldm-ui",
}


def _error(status: int, kind: str, message: str) -> JSONResponse:
    # AUTOMATIC1111's error body: error, detail, body, errors
    return JSONResponse(status_code=status, content={"error": kind, "detail": message, "body": "", "errors": message})


def create_api(config, engine, gradio_app=lambda: None) -> FastAPI:
    """The /sdapi/v1 app. `gradio_app()` returns Gradio's FastAPI app once launched (for the session login)."""
    auth = ApiAuth(config.api_auth or config.auth, bool(config.auth), gradio_app)
    jobs = ApiJobs(engine)

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
        translation = translate(body, engine)
        outputs, interrupted = jobs.run(translation.request, user, body.force_task_id)
        return generation_response(body, translation.request, outputs, translation.ignored, interrupted)

    @api.post("/txt2img", response_model=GenerationResponse)
    async def txt2img(body: Txt2ImgBody, user: str | None = Depends(caller)) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(generate, txt2img_request, body, user, limiter=waiting)

    @api.post("/img2img", response_model=GenerationResponse)
    async def img2img(body: Img2ImgBody, user: str | None = Depends(caller)) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(generate, img2img_request, body, user, limiter=waiting)

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
    api.get("/sd-vae")(lambda: [])
    api.get("/prompt-styles")(lambda: listings.prompt_styles(engine.config))

    @api.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        engine.models.list_models()  # the folders are read on every listing; nothing is cached to refresh

    @api.post("/refresh-loras")
    def refresh_loras() -> None:
        listings.loras(engine.config)

    @api.get("/options")
    def get_options() -> dict[str, Any]:
        return listings.options(engine)

    @api.post("/options")
    def set_options(values: dict[str, Any]) -> dict[str, Any]:
        ignored = [key for key in values if key != "sd_model_checkpoint"]
        if values.get("sd_model_checkpoint"):
            name = resolve_model(engine, values["sd_model_checkpoint"])
            from ldm_ui.engine.engine import JobFailed

            try:
                engine.switch_model(name)  # through the queue, after the jobs already waiting
            except JobFailed as error:
                raise JobFailedError(str(error)) from None
        # AUTOMATIC1111 answers null; the names of options ldm-ui does not have are reported, not silently dropped
        return {"ignored": ignored} if ignored else {}

    @api.post("/png-info", response_model=PNGInfoResponse)
    def png_info(body: PNGInfoBody) -> dict[str, Any]:
        from ldm_ui.metadata import exif_user_comment, read_png_parameters

        data = body.image.strip().partition(",")[2] if body.image.strip().startswith("data:") else body.image
        try:
            raw = base64.b64decode(data)
            with Image.open(io.BytesIO(raw)) as image:
                check_image("image", image)  # its size from the header, before a pixel is decoded
                image.load()  # text chunks after the pixel data are read with the pixels
                text = read_png_parameters(image) or exif_user_comment(image)
                other = {k: v for k, v in image.info.items() if k != "parameters" and isinstance(v, (str, int, float))}
        except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as error:
            raise RequestError(f"image could not be read as an image ({error})") from None
        return listings.png_info(text, other)

    for route, feature in NOT_BUILT.items():
        def not_built(message=f"{PREFIX}/{route}: {feature}") -> JSONResponse:
            return _error(501, "NotImplemented", message)
        api.post(f"/{route}")(not_built)

    # ---- the description of these routes only, behind the same login

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return get_openapi(title=api.title, version=api.version, routes=api.routes, servers=[{"url": PREFIX}])

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{PREFIX}/openapi.json", title=api.title)

    api.state.jobs = jobs
    return api
