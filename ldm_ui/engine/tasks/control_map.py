"""A ControlNet preprocessor's map for the unit's preview: on the worker, so learned detectors never race a
generation for the device, and loaded detectors stay cached between previews."""

from __future__ import annotations

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.preprocessors import PreprocessorError, preprocess
from ldm_ui.requests import ControlMapRequest, Finished, RequestError
from ldm_ui.results import ControlMap


def run(ctx: TaskContext) -> Finished:
    request: ControlMapRequest = ctx.request
    try:
        image = preprocess(request.image, request.preprocessor, request.width, request.height, ctx.config.models_dir,
                           request.canny_low, request.canny_high, ctx.hooks.controlnet_preprocessors)
    except PreprocessorError as error:
        raise RequestError(str(error)) from None
    return Finished(outputs=[], summary=f"{request.preprocessor}: {image.width}x{image.height} control map",
                    result=ControlMap(image=image, preprocessor=request.preprocessor))
