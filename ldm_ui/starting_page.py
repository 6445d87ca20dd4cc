"""A page that answers while the app starts: "ldm-ui is starting…", then the app itself.

Importing gradio, torch and diffusers and building the tabs takes 8-25 s on a 2-core machine; without this a
browser pointed at the address meanwhile gets "connection refused". `python app.py` serves this page on the app's
address before any of that, with 503 (Service Unavailable) and Retry-After, and reloads itself every second; the
app closes it right before Gradio takes the same address. Standard library only, so it is up in a fraction of a
second. It serves the same static text for every path and reads no request body.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="1"><title>ldm-ui is starting</title>
<style>body{font-family:system-ui,sans-serif;margin:4em auto;max-width:36em;color:#333}</style></head>
<body><h1>ldm-ui is starting&hellip;</h1>
<p>Loading the interface (Gradio, torch, diffusers). This page reloads itself and becomes the app when it is
ready; the model then loads in the background, as the header shows.</p></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    def _starting(self, body: bool) -> None:
        self.send_response(503)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Retry-After", "1")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(PAGE)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._starting(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._starting(body=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet: the app logs its own start
        return


class StartingPage:
    """serve(host, port) -> a running StartingPage, or None when the address cannot be taken (Gradio will say
    why when it tries); close() frees the address for the app."""

    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="starting-page", daemon=True)
        self.thread.start()

    @classmethod
    def serve(cls, host: str, port: int | None) -> StartingPage | None:
        if not port:
            return None
        try:
            server = ThreadingHTTPServer((host, port), _Handler)
        except OSError as error:
            log.debug("no starting page on %s:%s: %s", host, port, error)
            return None
        server.daemon_threads = True
        return cls(server)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
