"""Keep the API description off Gradio's login page.

When a login is required, Gradio still embeds `window.gradio_api_info` (every endpoint, its parameters, and
defaults such as the model list) in the HTML it sends to a visitor who has not signed in, although its
`/gradio_api/info` route refuses that visitor. This ASGI middleware, added through FastAPI's public
`middleware` argument, empties that object on the login page only; a signed-in user's page is untouched.
"""

from __future__ import annotations

import re

from starlette.middleware import Middleware

EMPTY_API_INFO = b'{"named_endpoints": {}, "unnamed_endpoints": {}}'
_API_INFO = re.compile(rb"(window\.gradio_api_info\s*=\s*).*?(;?\s*</script>)", re.DOTALL)
_LOGIN_MARK = re.compile(rb'"auth_required"\s*:\s*true')


class HideApiInfoOnLoginPage:
    """Pure ASGI middleware: buffers HTML page responses and rewrites the login page's API description."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or _is_api(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def buffered_send(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    start = None
                    await send(message)
                    return
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _scrub(b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, buffered_send)


def _is_api(path: str) -> bool:
    return path.startswith(("/gradio_api/", "/assets/", "/static/", "/svelte/"))


def _scrub(page: bytes) -> bytes:
    if not _LOGIN_MARK.search(page):
        return page
    return _API_INFO.sub(lambda m: m.group(1) + EMPTY_API_INFO + m.group(2), page, count=1)


def login_page_middleware() -> list[Middleware]:
    """For launch(app_kwargs={"middleware": ...})."""
    return [Middleware(HideApiInfoOnLoginPage)]
