"""How a tab turns a job's events into browser updates: coalesced, never behind, with the engine's queue shown."""

from __future__ import annotations

import html
import queue
import threading

from PIL import Image

from ldm_ui.requests import Cancelled, Finished, Output, Preview, Progress, Started, Txt2ImgRequest
from ldm_ui.ui.common import Session, stream_job
from ldm_ui.ui.job_stream import event_batches

TINY = "tiny-sd"


class QueuedJob:
    """The Job interface the stream reads (events(timeout), done, cancel_requested), fed by the test."""

    def __init__(self, events=()):
        self._events: queue.Queue = queue.Queue()
        for event in events:
            self._events.put(event)
        self.done = threading.Event()
        self.cancel_requested = False

    def cancel(self):
        self.cancel_requested = True

    def events(self, timeout=None):
        while True:
            yield self._events.get(timeout=timeout)


def progress(step, steps=150):
    return Progress(step=step, steps=steps, batch_index=0, batch_count=1, it_per_s=50.0, eta_s=1.0)


def preview(step):
    return Preview(image=Image.new("RGB", (8, 8), (step, 0, 0)), step=step)


def test_a_backlog_becomes_one_update_with_the_newest_progress_and_preview():
    image = Image.new("RGB", (8, 8))
    output = Output(image=image, seed=1, infotext="Seed: 1", path=None)
    backlog = [Started()] + [e for step in range(1, 151) for e in (progress(step), preview(step))]
    job = QueuedJob(backlog + [output, Finished(outputs=[output])])
    batches = list(event_batches(job))
    assert len(batches) == 1
    kinds = [type(e).__name__ for e in batches[0]]
    assert kinds == ["Started", "Progress", "Preview", "Output", "Finished"]
    assert batches[0][1].step == 150 and batches[0][2].step == 150


def test_between_slots_the_stream_sleeps_and_an_urgent_event_wakes_it():
    job, urgent = QueuedJob([progress(1)]), threading.Event()
    batches = event_batches(job, urgent, interval_s=60.0)
    assert [e.step for e in next(batches)] == [1]  # the first update goes out at once
    job._events.put(progress(2))
    job._events.put(progress(3))
    job._events.put(Cancelled("interrupted"))
    urgent.set()  # what UrgentEvents does for the Cancelled: without it this would wait out the 60 s slot
    assert [type(e).__name__ for e in next(batches)] == ["Progress", "Cancelled"]


def test_urgent_events_are_flagged_for_the_own_job_only(engine):
    from ldm_ui.ui.job_stream import UrgentEvents

    mine = Txt2ImgRequest(prompt="a red circle", model=TINY, steps=1, width=64, height=64)
    other = Txt2ImgRequest(prompt="a red circle", model=TINY, steps=1, width=64, height=64)

    class Job:
        def __init__(self, request):
            self.request = request

    with UrgentEvents(engine, mine) as urgent:
        assert urgent in engine.event_listeners
        urgent(Job(mine), progress(1))
        urgent(Job(other), Finished(outputs=[]))
        assert not urgent.event.is_set()
        urgent(Job(mine), Finished(outputs=[]))
        assert urgent.event.is_set()
    assert urgent not in engine.event_listeners


def statuses(updates) -> list[str]:
    return [html.unescape(u[1]) for u in updates if isinstance(u[1], str)]


def test_a_second_job_shows_its_place_in_the_engine_queue(engine):
    release = threading.Event()
    engine.step_hooks.append(lambda info: release.wait(60))  # the first job holds the worker at its first step
    first = engine.submit(Txt2ImgRequest(prompt="a red circle", model=TINY, steps=2, width=64, height=64))
    second = stream_job(engine, Session(), lambda: Txt2ImgRequest(prompt="a blue circle", model=TINY, steps=1,
                                                                  width=64, height=64, preview_method="off"))
    assert "Queued: 1 job(s) ahead." in statuses([next(second)])[0]
    release.set()
    rest = statuses(list(second))
    first.wait(60)
    assert "Done: 1 image(s)" in rest[-1]


def test_interrupt_names_the_step_it_stopped_at():
    job = QueuedJob([Started(), progress(20), progress(21), Cancelled("interrupted")])
    session = Session()

    class Engine:
        event_listeners: list = []
        config = None

        def submit(self, request):
            return job

    updates = list(stream_job(Engine(), session, lambda: object()))
    assert statuses(updates)[-1].endswith("Interrupted at step 21/150.</span></div>")


def test_error_lines_name_the_app_folders_not_server_paths(engine):
    config = engine.config
    updates = list(stream_job(engine, Session(), lambda: Txt2ImgRequest(prompt="x", model="no-such-model")))
    line = statuses(updates)[-1]
    # the engine's message shortens the folder itself (ldm_ui/safe_paths.py): never the server's full path
    assert "unknown model 'no-such-model'" in line and "tiny-sd" in line, line  # other tests add models
    assert str(config.models_dir) not in line and str(config.models_dir.parent) not in line
