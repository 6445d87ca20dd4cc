"""The app's CORS answers, given in front of every other layer (Gradio's own CORS layer included).

Gradio's CORS layer answers preflights itself and, on any address that is not localhost (--listen, --share),
reflects whatever Origin it is sent, with credentials. `CorsGate` runs before it, so only the app's own origin
and --cors-allow-origin ones ever get CORS headers. ldm_ui/guard.py refuses foreign origins too, one layer in.
"""

from __future__ import annotations

import urllib.parse
from contextlib import asynccontextmanager

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response

from ldm_ui.config import AppConfig

CORS_METHODS = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
PREFLIGHT_MAX_AGE_S = 600


class CorsGate:
    """The app's CORS answers, in front of everything else (Gradio's CORS layer included).

    Gradio's own layer answers preflights itself and, on any address that is not localhost (--listen, --share),
    reflects whatever Origin it is sent, with credentials. Here a request that carries an Origin is answered
    so that only the app's own origin and --cors-allow-origin ones are ever allowed:
    - a preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin gets 200 and CORS headers
      naming exactly that origin; from any other origin 403 with no CORS headers;
    - any other request from a foreign origin gets 403 with no CORS headers (the route never runs, and the
      page cannot even read the refusal);
    - a response to an allowed origin carries CORS headers for that origin only, whatever the inner layers set.
    """

    def __init__(self, app, allowed_origins: frozenset[str]):
        self.app = app
        self.allowed_origins = allowed_origins

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if not own_or_allowed(origin, headers, self.allowed_origins):
            await JSONResponse({"detail": foreign_origin(origin)}, status_code=403)(scope, receive, send)
            return
        if scope.get("method") == "OPTIONS" and "access-control-request-method" in headers:
            allowed = {"Access-Control-Allow-Methods": CORS_METHODS, "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
                       **_allow(origin)}
            if "access-control-request-headers" in headers:
                allowed["Access-Control-Allow-Headers"] = headers["access-control-request-headers"]
            await Response("OK", status_code=200, headers=allowed, media_type="text/plain")(scope, receive, send)
            return

        async def with_cors(message):
            if message["type"] == "http.response.start":
                answer = MutableHeaders(scope=message)
                for name in [k for k in answer if k.startswith("access-control-")]:
                    del answer[name]
                for name, value in _allow(origin).items():
                    answer[name] = value
                answer.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, with_cors)


def _allow(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}


def own_or_allowed(origin: str, headers: Headers, allowed_origins: frozenset[str]) -> bool:
    """Whether a browser page of `origin` may call the app: its own origin (same host and port as the request's
    Host) or a --cors-allow-origin one. "null" (sandboxed frames, file: pages) and anything odd never may."""
    parsed = urllib.parse.urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return False
    if parsed.netloc.lower() == headers.get("host", "").lower():
        return True
    return f"{parsed.scheme}://{parsed.netloc}".lower() in allowed_origins


def foreign_origin(origin: str) -> str:
    return f"requests from pages of {origin!r} are not allowed; start the app with --cors-allow-origin {origin} to allow them"


def cors_lifespan(config: AppConfig):
    """For launch(app_kwargs={"lifespan": ...}): puts `CorsGate` in front of the whole app when the server starts.

    Gradio adds its CORS layer with `add_middleware` after our middleware list is given, so it always runs
    before ours, and Starlette has no public way to add a layer outside it. Starlette builds the app's layer
    stack on the first ASGI call, which is the lifespan start-up, before any HTTP request is accepted; this
    wraps that built stack once. No Gradio or Starlette code is changed.
    """
    allowed = allowed_origins(config)

    @asynccontextmanager
    async def lifespan(app):
        if not isinstance(app.middleware_stack, CorsGate):
            app.middleware_stack = CorsGate(app.middleware_stack, allowed)
        yield

    return lifespan


def allowed_origins(config: AppConfig) -> frozenset[str]:
    """The --cors-allow-origin origins, as browsers spell them in `Origin` (lower case, no trailing slash)."""
    return frozenset(o.lower().rstrip("/") for o in config.cors_allow_origins)
