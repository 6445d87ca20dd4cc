"""GET /sdapi/v1/stream/{task_id}: one task's events as server-sent events, so a client sees previews without
polling (beyond AUTOMATIC1111, whose /progress is the only way there).

Start a job with `force_task_id` and open the stream with the same id, before or after posting it:

    event: queued    data: {"task_id": ..., "position": 0}
    event: progress  data: {"step": 3, "steps": 20, "batch": 0, "batch_count": 1, "progress": 0.15, "eta_relative": 1.2}
    event: preview   data: {"step": 3, "image": "<base64 PNG>"}
    event: result    data: {"image": "<base64 PNG with its infotext>", "seed": 1, "infotext": "..."}
    event: done | cancelled   data: {"count": N}        event: failed   data: {"message": "..."}
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from ldm_ui.requests import Output, Preview, Progress, Queued

from ldm_ui.api.jobs import ApiJobs
from ldm_ui.api.results import png_base64

WAIT_FOR_TASK_S = 30.0  # a stream opened before its job is posted waits this long for it
KEEPALIVE_S = 15.0


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def task_events(jobs: ApiJobs, task_id: str, user: str | None) -> AsyncIterator[str]:
    subscriber = jobs.subscribe(task_id, user)
    sent: set[int] = set()
    try:
        started = jobs.is_known(task_id, user)
        while True:
            try:
                kind, value = await asyncio.wait_for(subscriber.queue.get(),
                                                     KEEPALIVE_S if started else WAIT_FOR_TASK_S)
            except asyncio.TimeoutError:
                if started or jobs.is_known(task_id, user):
                    started = True
                    yield ": keep-alive\n\n"
                    continue
                yield _sse("failed", {"message": f"no task {task_id!r} of yours started within {WAIT_FOR_TASK_S:g} s; "
                                                 "post txt2img or img2img with force_task_id set to it"})
                return
            started = True
            if kind == "event":
                text = _event_text(task_id, value, sent)
                if text:
                    yield text
                continue
            if kind in ("done", "cancelled"):
                for output in value:  # results the stream has not carried yet (a job faster than the stream)
                    text = _event_text(task_id, output, sent)
                    if text:
                        yield text
                yield _sse(kind, {"count": len(value)})
            else:
                yield _sse("failed", {"message": str(value)})
            return
    finally:
        jobs.unsubscribe(subscriber)


def _event_text(task_id: str, event: Any, sent: set[int]) -> str | None:
    if isinstance(event, Queued):
        return _sse("queued", {"task_id": task_id, "position": event.position})
    if isinstance(event, Progress):
        return _sse("progress", {"step": event.step, "steps": event.steps, "batch": event.batch_index,
                                 "batch_count": event.batch_count, "progress": round(event.fraction, 4),
                                 "eta_relative": round(event.eta_s, 3)})
    if isinstance(event, Preview):
        return _sse("preview", {"step": event.step, "image": png_base64(event.image)})
    if isinstance(event, Output) and id(event) not in sent:
        sent.add(id(event))
        return _sse("result", {"image": png_base64(event.image, event.infotext), "seed": event.seed,
                               "infotext": event.infotext})
    return None
