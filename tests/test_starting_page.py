"""The "ldm-ui is starting…" page app.py serves on the app's address while gradio, torch and diffusers load."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from browser_support import free_port
from ldm_ui.starting_page import StartingPage


def test_the_starting_page_answers_503_with_a_reloading_page_and_frees_the_address():
    port = free_port()
    page = StartingPage.serve("127.0.0.1", port)
    assert page is not None
    try:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/any/path?x=1", timeout=10)
        assert answer.value.code == 503 and answer.value.headers["Retry-After"] == "1"
        body = answer.value.read().decode()
        assert "ldm-ui is starting" in body and 'http-equiv="refresh"' in body
        assert StartingPage.serve("127.0.0.1", port) is None  # the address is taken: no second page, no crash
    finally:
        page.close()
    with socket.socket() as s:  # the app can take the address now
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
