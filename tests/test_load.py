"""Load on loopback: 16 gradio_client users x 4 jobs each against the running app with the tiny model.

Every job completes, every image is saved once with its metadata, each user gets back only their own images,
and waiting users are told their place in the queue. Bounded: 64 jobs, 2 steps at 64x64, a deadline per job.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from browser_support import running_app
from ldm_ui.metadata import parse_infotext, read_png_parameters

USERS, JOBS_EACH = 16, 4
JOB_DEADLINE_S = 300


def seed_for(user: int, job: int) -> int:
    return 1000 * (user + 1) + job


def required_nones(client) -> dict:
    """Inputs without a default that other tabs' features add to /txt2img (e.g. ControlNet images): None."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/txt2img"]
    return {p["parameter_name"]: None for p in api["parameters"] if not p["parameter_has_default"]
            and p["parameter_name"] != "prompt"}


def image_path(item) -> str:
    image = item["image"]
    return image["path"] if isinstance(image, dict) else image


QUEUED = re.compile(r"Queued: (\d+) job\(s\) ahead")


def test_16_users_4_jobs_each(app_config, tmp_path):
    from gradio_client import Client

    app_config.preview_method = "off"
    ranks: dict[int, list[int]] = defaultdict(list)
    results: dict[int, list[tuple[int, str, str]]] = defaultdict(list)  # user -> (seed, image path, status)
    errors: list[str] = []
    started = time.monotonic()
    with running_app(app_config) as (url, engine, _):
        clients = [Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120},
                          download_files=str(tmp_path / f"user-{index}")) for index in range(USERS)]
        extra = required_nones(clients[0])
        barrier = threading.Barrier(USERS)

        def user(index: int) -> None:
            client = clients[index]
            barrier.wait(timeout=120)  # all 16 start together, so the queue fills up
            for job_number in range(JOBS_EACH):
                seed = seed_for(index, job_number)
                job = client.submit(prompt=f"user {index} job {job_number}", steps=2, seed=seed, width=64,
                                    height=64, **extra, api_name="/txt2img")
                deadline = time.monotonic() + JOB_DEADLINE_S
                while not job.done():
                    if time.monotonic() > deadline:
                        errors.append(f"user {index} job {job_number}: no result within {JOB_DEADLINE_S} s")
                        job.cancel()
                        return
                    time.sleep(0.02)
                preview, status_html, gallery, infotext, *_ = job.result()
                # the places the engine's queue told this user, as the status line showed them
                for update in job.outputs():
                    shown = QUEUED.search(str(update[1]))
                    if shown:
                        ranks[index].append(int(shown.group(1)))
                if not gallery:
                    errors.append(f"user {index} job {job_number}: no image; status: {status_html}")
                    continue
                for item in gallery:
                    results[index].append((seed, image_path(item), status_html))

        with ThreadPoolExecutor(USERS) as pool:
            list(pool.map(user, range(USERS)))
        elapsed = time.monotonic() - started
        saved = sorted(app_config.outputs_dir.rglob("*.png"))
    assert not errors, errors
    # 64 of 64 complete, each with exactly its own image
    assert sum(len(r) for r in results.values()) == USERS * JOBS_EACH
    for index in range(USERS):
        seeds = [seed for seed, _, _ in results[index]]
        assert seeds == [seed_for(index, j) for j in range(JOBS_EACH)]
        for seed, path, status in results[index]:
            assert f"Done: 1 image(s), seed {seed}" in status
            with Image.open(path) as image:
                info = parse_infotext(read_png_parameters(image))
            # the image this user got back is the one made from this user's prompt and seed
            assert info.settings["Seed"] == str(seed) and info.prompt.startswith(f"user {index} job ")
    # no file shared between users: 64 distinct results, 64 distinct files on disk, each with metadata
    returned = [path for r in results.values() for _, path, _ in r]
    assert len(set(returned)) == USERS * JOBS_EACH
    assert len(saved) == USERS * JOBS_EACH and len({p.name for p in saved}) == USERS * JOBS_EACH
    disk_seeds = set()
    for path in saved:
        with Image.open(path) as image:
            disk_seeds.add(int(parse_infotext(read_png_parameters(image)).settings["Seed"]))
    assert disk_seeds == {seed_for(u, j) for u in range(USERS) for j in range(JOBS_EACH)}
    # waiting users were told their place in the status line: somebody stood behind others, and nobody saw a
    # place past the crowd (each user has one job in the queue at a time)
    all_ranks = [rank for user_ranks in ranks.values() for rank in user_ranks]
    assert all_ranks and max(all_ranks) >= 1 and max(all_ranks) < USERS
    print(f"\n64 jobs by 16 users in {elapsed:.1f} s; queue places seen: {sorted(set(all_ranks))}")
