"""The image history: newest first, paging, prompt search, delete to the trash and restore, per user with logins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from ldm_ui.history import TRASH, History, HistoryError


def write_png(path: Path, prompt: str, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"{prompt}\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 8x8")
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def outputs(tmp_path) -> Path:
    root = tmp_path / "outputs"
    for i in range(30):
        task = ("txt2img", "img2img", "inpaint")[i % 3]
        write_png(root / task / "2026-12-01" / f"{i:05d}-{i}.png", f"a {'red' if i % 2 else 'blue'} circle {i}",
                  1_000_000 + i)
    (root / "txt2img" / "2026-12-01" / ".saving-x.png").write_bytes(b"half")
    return root


def test_newest_first_across_tasks_in_pages(outputs):
    history = History(outputs)
    first = history.page(1, per_page=12)
    assert (first.total, first.pages) == (30, 3)
    assert [p.name for p in first.paths[:3]] == ["00029-29.png", "00028-28.png", "00027-27.png"]
    last = history.page(3, per_page=12)
    assert [p.name for p in last.paths] == [f"{i:05d}-{i}.png" for i in range(5, -1, -1)]
    assert history.page(99, per_page=12).page == 3  # past the end: the last page


def test_search_by_prompt_text(outputs):
    found = History(outputs).page(1, per_page=50, search="RED circle 2")
    assert sorted(p.name for p in found.paths) == ["00021-21.png", "00023-23.png", "00025-25.png",
                                                   "00027-27.png", "00029-29.png"]


def test_delete_moves_to_the_trash_and_restore_brings_it_back(outputs):
    history = History(outputs)
    newest = history.page(1).paths[0]
    trashed = history.delete(newest)
    assert trashed == outputs / TRASH / newest.relative_to(outputs) and trashed.is_file()
    assert not newest.exists() and history.page(1).total == 29  # the trash is not listed
    assert history.restore(trashed) == newest and newest.is_file() and history.page(1).total == 30


def test_files_outside_the_outputs_are_refused(outputs, tmp_path):
    outside = write_png(tmp_path / "elsewhere.png", "x", 1)
    with pytest.raises(HistoryError, match="elsewhere.png is not an image in"):
        History(outputs).delete(outside)


def test_the_tab_is_off_with_logins_when_the_app_records_no_owners(app_config):
    import gradio as gr

    from ldm_ui.ui import history as history_tab

    class FakeUi:
        owners = None

        class engine:
            config = app_config

    app_config.auth = [("a", "b")]
    with gr.Blocks() as demo:
        history_tab.build(FakeUi)
    texts = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert any("does not record who made which image" in text for text in texts)
    assert not any(isinstance(block, gr.Gallery) for block in demo.blocks.values())


def test_with_an_owner_check_a_user_lists_deletes_and_restores_only_their_own(outputs):
    history = History(outputs)
    everything = history.page(1, per_page=50).paths
    alices = set(everything[::2])
    alice = lambda path: path in alices  # noqa: E731
    bob = lambda path: path not in alices  # noqa: E731
    page = history.page(1, per_page=50, visible=alice)
    assert set(page.paths) == alices and page.total == 15
    assert set(history.page(1, per_page=50, search="red", visible=bob).paths) <= set(everything) - alices
    with pytest.raises(HistoryError, match="is not one of your images"):
        history.delete(everything[0], visible=bob)
    assert everything[0].is_file()
    trashed = history.delete(everything[0], visible=alice)
    with pytest.raises(HistoryError, match="is not one of your images"):
        history.restore(trashed, visible=bob)
    assert history.restore(trashed, visible=alice) == everything[0]


def test_owners_are_kept_in_their_file_and_read_back_after_a_restart(tmp_path):
    from ldm_ui.ownership import OutputOwners

    store = tmp_path / "cache" / "output-owners.jsonl"
    image = tmp_path / "outputs" / "txt2img" / "00000-1.png"
    owners = OutputOwners(store)
    owners.record("alice", image)
    owners.record("alice", image)  # a job's Output and Finished both name it: one line
    owners.record("bob", tmp_path / "outputs" / "txt2img" / "00001-2.png")
    assert len(store.read_text().splitlines()) == 2
    with store.open("a") as out:
        out.write("not json\n")
    again = OutputOwners(store)
    assert again.owner_of(image) == "alice" and again.owner_of(tmp_path / "outputs" / "txt2img" / "00001-2.png") == "bob"
    assert again.owner_of(tmp_path / "outputs" / "txt2img" / "00002-3.png") is None


def test_visible_to_matches_owner_of_for_files_and_run_folders(tmp_path):
    from ldm_ui.ownership import OutputOwners

    owners = OutputOwners()
    mine, theirs = tmp_path / "txt2img" / "00000-1.png", tmp_path / "txt2img" / "00001-2.png"
    frames = tmp_path / "interpolate" / "run-1"
    owners.record("alice", mine)
    owners.record("bob", theirs)
    owners._folders[str(frames.resolve())] = "alice"  # what the listener records for an interpolate job
    visible = owners.visible_to("alice")
    for path in (mine, theirs, frames / "frame-000.png", tmp_path / "txt2img" / "00002-3.png"):
        assert visible(path) == (owners.owner_of(path) == "alice"), path
    assert visible(mine) and not visible(theirs) and visible(frames / "frame-000.png")
