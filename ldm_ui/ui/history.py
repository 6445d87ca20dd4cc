"""The History tab: this app's outputs, newest first, with paging, a prompt search, the selected image's infotext,
delete (to the trash in the outputs folder) and undo.

With logins on, each user sees (and deletes) only the images their own jobs made: the app's OutputOwners
(ldm_ui/ownership.py) knows whose each file is, and keeps that across restarts. Images no recorded job made (from
before logins were on, or an extension's) are listed to nobody then.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ldm_ui.history import History, HistoryError, Visible

PER_PAGE = 24


def build(ui) -> None:
    config = ui.engine.config
    owners = ui.owners
    if config.auth and owners is None:  # an app built without the owner records cannot tell users' images apart
        gr.Markdown("The history is off: logins are on but this app does not record who made which image.",
                    elem_id="history-off")
        return
    history = History(config.outputs_dir)

    def visible_for(request: gr.Request | None) -> Visible | None:
        """With logins on: the signed-in user's own images only (nobody's, for a request without a user)."""
        if not config.auth:
            return None
        user = getattr(request, "username", None)
        return owners.visible_to(user) if user is not None else (lambda path: False)
    with gr.Row(equal_height=True):
        search = gr.Textbox(label="Search prompts", placeholder="words in the prompt", scale=4,
                            elem_id="history-search")
        page = gr.Number(value=1, precision=0, minimum=1, label="Page", scale=1, elem_id="history-page")
        refresh = gr.Button("↻ Refresh", size="sm", scale=0, min_width=100, elem_id="history-refresh")
    summary = gr.Markdown("", elem_id="history-summary")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="History", columns=6, height="auto", object_fit="contain",
                                 elem_id="history-gallery", format="png")
        with gr.Column(scale=2):
            infotext = gr.Textbox(label="Generation parameters", lines=6, interactive=False,
                                  elem_id="history-infotext")
            with gr.Row():
                delete = gr.Button("🗑 Delete", variant="stop", size="sm", elem_id="history-delete")
                undo = gr.Button("↶ Undo delete", size="sm", elem_id="history-undo")
            send_row = gr.Row()  # Send to txt2img / img2img / inpaint, once every tab exists
            note = gr.Markdown("", elem_id="history-note")
    shown = gr.State([])  # the paths on this page, in gallery order
    selected = gr.State(None)
    selected_path = gr.State(None)  # what "Send to" sends
    trashed = gr.State([])  # this session's deletions, newest last

    def show(search_text, page_number, request: gr.Request):
        result = history.page(int(page_number or 1), PER_PAGE, search_text or "", visible_for(request))
        text = (f"{result.total} image(s){' matching' if (search_text or '').strip() else ''}; "
                f"page {result.page} of {result.pages}")
        return [str(p) for p in result.paths], text, [str(p) for p in result.paths], result.page, None, "", None

    outputs = [gallery, summary, shown, page, selected, infotext, selected_path]
    for event in (refresh.click, search.submit, page.submit):
        event(show, [search, page], outputs, queue=False, api_visibility="private")

    def on_open(ui) -> None:  # the tab fills itself each time it is opened: new outputs appear
        tab = ui.tab_components.get("History")
        if tab is not None:
            tab.select(show, [search, page], outputs, queue=False, api_visibility="private")

    ui.after_build.append(on_open)

    def select(paths, event: gr.SelectData):
        if not paths or event.index >= len(paths):
            return gr.skip(), gr.skip(), gr.skip()
        return event.index, history.infotext(Path(paths[event.index])), paths[event.index]

    gallery.select(select, shown, [selected, infotext, selected_path], queue=False, api_visibility="private")

    def send_buttons(ui) -> None:
        from ldm_ui.ui.pnginfo import wire_send_buttons

        wire_send_buttons(ui, send_row, selected_path, infotext, note, source="history")

    # queued behind every other finisher, as PNG info's: img2img and inpaint register their image inputs in theirs
    ui.after_build.append(lambda ui: ui.after_build.append(send_buttons))

    def remove(paths, index, done, search_text, page_number, request: gr.Request):
        if index is None or not paths:
            return [gr.skip()] * 7 + [done, "Select an image first."]
        try:
            target = history.delete(Path(paths[index]), visible_for(request))
        except HistoryError as error:
            return [gr.skip()] * 7 + [done, f"⚠️ {error}"]
        return [*show(search_text, page_number, request), done + [str(target)],
                f"Moved {Path(paths[index]).name} to the trash; **Undo delete** brings it back."]

    delete.click(remove, [shown, selected, trashed, search, page], [*outputs, trashed, note], queue=False,
                 api_visibility="private")

    def restore(done, search_text, page_number, request: gr.Request):
        if not done:
            return [gr.skip()] * 7 + [done, "Nothing to undo."]
        try:
            back = history.restore(Path(done[-1]), visible_for(request))
        except HistoryError as error:
            return [gr.skip()] * 7 + [done[:-1], f"⚠️ {error}"]
        return [*show(search_text, page_number, request), done[:-1], f"Restored {back.name}."]

    undo.click(restore, [trashed, search, page], [*outputs, trashed, note], queue=False, api_visibility="private")
