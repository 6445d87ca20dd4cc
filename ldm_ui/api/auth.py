"""Who may call /sdapi/v1: HTTP Basic logins (--api-auth, else --auth), or a browser signed in to the app.

With no login configured at all the API is open, which config.py allows only on loopback (--api with --listen or
--share and no credentials refuses to start). Passwords are compared in constant time. The app's login is
Gradio's session cookie, checked against the tokens of the Gradio app serving us (as Gradio's own /user route
reads them), so a signed-in browser page can call the API too.
"""

from __future__ import annotations

from typing import Callable

from fastapi import HTTPException, Request

from ldm_ui.access import basic_auth_user

UNAUTHORIZED = {"WWW-Authenticate": 'Basic realm="ldm-ui API"'}


class ApiAuth:
    def __init__(self, logins: list[tuple[str, str]], app_logins_on: bool, gradio_app: Callable[[], object | None]):
        self.logins = list(logins)
        self.app_logins_on = app_logins_on  # --auth is set: Gradio's session cookie is a login too
        self.gradio_app = gradio_app  # the Gradio App once launched (its session tokens live there)

    @property
    def required(self) -> bool:
        return bool(self.logins) or self.app_logins_on

    def user(self, request: Request) -> str | None:
        """The caller's user name; None when no login is configured. Raises 401 otherwise."""
        if not self.required:
            return None
        user = self._basic_user(request.headers.get("authorization", "")) or self._session_user(request)
        if user is None:
            raise HTTPException(status_code=401, detail="Not authenticated: send HTTP Basic credentials "
                                "(--api-auth or --auth logins) or sign in to the app first", headers=UNAUTHORIZED)
        return user

    def _basic_user(self, header: str) -> str | None:
        return basic_auth_user(header, self.logins)

    def _session_user(self, request: Request) -> str | None:
        app = self.gradio_app() if self.app_logins_on else None
        if app is None:
            return None
        cookie_id = getattr(app, "cookie_id", "")
        tokens = getattr(app, "tokens", {}) or {}
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            token = request.cookies.get(name)
            if token and token in tokens:
                return tokens[token]
        return None


class BodyLimit:
    """Pure ASGI middleware: a request body above `max_bytes` gets 413 before it is read (or as soon as it
    streams past the limit without a Content-Length)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, int(length))
            return
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413, detail=self._message(seen))
            return message

        await self.app(scope, counting_receive, send)

    def _message(self, size: int) -> str:
        return (f"request body of {size:,} bytes exceeds the API limit of {self.max_bytes:,} bytes "
                f"(4 x --max-file-size-mb, for base64 images); send smaller images or raise --max-file-size-mb")

    async def _refuse(self, send, size: int) -> None:
        import json

        body = json.dumps({"error": "PayloadTooLarge", "detail": self._message(size)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
