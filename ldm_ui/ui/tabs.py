"""The list of tabs after txt2img, in the order users see them. Each entry: (title, build(ui))."""

from __future__ import annotations


def extra_tabs() -> list:
    from ldm_ui.ui import adapters_tab, pnginfo

    from ldm_ui.ui import inspector, interpolate
    from ldm_ui.ui import extras, history, img2img, inpaint, outpaint

    return [("img2img", img2img.build), ("Inpaint", inpaint.build), ("Outpaint", outpaint.build),
            (adapters_tab.TAB_TITLE, adapters_tab.build),
            ("PNG info", pnginfo.build), ("Interpolate", interpolate.build), ("Latent inspector", inspector.build),
            ("Extras", extras.build), ("History", history.build)]
