"""'Send to img2img' / 'Send to inpaint': the chosen result, as its saved file, into another tab's image input.

Source tabs register their buttons in `ui.send_buttons[source][target]`; each target tab calls `wire_target`
from `ui.after_build`, once every tab exists. The saved PNG (true resolution, infotext inside) is what travels,
together with the prompt and negative prompt it was made with.
"""

from __future__ import annotations

import gradio as gr

from ldm_ui.requests import Output
from ldm_ui.ui.common import chosen_output, render_status, selected_index


def wire_target(ui, target: str, image_input: gr.components.Component, controls, status: gr.HTML) -> None:
    """Connect every source tab's 'Send to <target>' button to `image_input` and switch to the target tab.

    The target's prompt, negative prompt and width/height follow the image that was sent.
    """
    from ldm_ui.image_ops import size_for_image
    from ldm_ui.metadata import parse_infotext

    ui.image_inputs[target] = image_input  # PNG info sends its dropped image here too
    for source, buttons in ui.send_buttons.items():
        button = buttons.get(target)
        if button is None:
            continue
        _controls, panel = ui.tabs[source]
        selected = gr.State(None)
        panel.gallery.select(selected_index, None, selected, queue=False, api_visibility="private",
                             show_progress="hidden")
        # a new result set forgets the old selection (a State's own change event would hash its PIL images)
        panel.gallery.change(lambda: None, None, selected, queue=False, api_visibility="private",
                             show_progress="hidden")

        def send(outputs: list[Output], index: int | None, source: str = source):
            output = chosen_output(outputs, index)
            if output is None:
                return [gr.skip()] * 6 + [
                    render_status(f"Nothing to send yet: generate an image in {source} first.", kind="warn")]
            info = parse_infotext(output.infotext)
            width, height = output.image.size
            note = render_status(f"Received the {width}x{height} image with seed {output.seed} from {source}.")
            return [output.path or output.image, info.prompt, info.negative_prompt, *size_for_image(output.image),
                    gr.Tabs(selected=target), note]

        button.click(send, [panel.outputs_state, selected],
                     [image_input, controls.prompt, controls.negative_prompt, controls.width, controls.height,
                      ui.tab_group, status], queue=False, api_visibility="private")
