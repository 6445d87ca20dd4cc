"""One ASGI gate in front of every route the server has, including routes added later (the HTTP API).

Gradio checks the login inside each route, after FastAPI has read and parsed the request body, and it trusts
the Host and Origin headers. This middleware runs before any route and, in this order:

1. Host: while serving on 127.0.0.1 only local names (and --allowed-host ones) are accepted, so a web page
   whose name was rebound to 127.0.0.1 (DNS rebinding) cannot drive the app.
2. Origin: a request a browser sends from another site's page is refused unless that origin is the app's own
   or given with --cors-allow-origin; `GET /logout` is refused when the browser says it came from another site.
   ldm_ui/cors.py answers the CORS side of this in front of Gradio's own CORS layer (which reflects any
   Origin on a LAN or share address, preflights included).
3. Login before reading: with logins on, a request with a body (POST, PUT, PATCH, DELETE) needs a signed-in
   session, except the login itself; a stranger gets 401 before a byte of the body is read.
4. Body caps per path prefix (`GuardPolicy.body_caps`, longest prefix wins): Content-Length over the cap gets
   413 at once, and a body without one is counted as it arrives. Uploads are capped per request, and per user
   per day (--upload-quota-mb).
5. JSON payloads may not carry `data:` URLs or file paths outside Gradio's upload folder: images must be
   uploaded files, which ldm_ui/images.py checks from their header before decoding.
6. Files: under the outputs folder, never a dot-folder, and with logins on only the user whose job made it
   (ldm_ui/ownership.py); an upload only to the users who uploaded it, and it is deleted when the sessions
   that used it end (ldm_ui/uploads.py).
7. Logins: failures are counted per user and per address and logged (ldm_ui/login_throttle.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse

from ldm_ui.access import basic_auth_user
from ldm_ui.config import AppConfig
from ldm_ui.cors import allowed_origins, foreign_origin, own_or_allowed
from ldm_ui.login_throttle import LoginThrottle

log = logging.getLogger(__name__)

MB = 1024 * 1024
DEFAULT_BODY_CAP = 2 * MB  # generation payloads are a few KB; images arrive through the upload route
LOGIN_BODY_CAP = 16 * 1024
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_PATHS = frozenset({"/login", "/login/"})
UPLOAD_PATH = "/gradio_api/upload"
FILE_PREFIX = "/gradio_api/file="
DAY_S = 24 * 3600


@dataclass
class GuardPolicy:
    auth_required: bool
    check_host: bool  # serving on loopback only
    allowed_hosts: frozenset[str]
    allowed_origins: frozenset[str]
    outputs_dir: Path
    upload_cap: int
    upload_quota: int
    body_caps: dict[str, int] = field(default_factory=dict)  # path prefix -> bytes; longest prefix wins
    default_body_cap: int = DEFAULT_BODY_CAP
    # path prefixes whose callers may sign in with HTTP Basic instead of a session (the /sdapi/v1 API, --api)
    basic_auth_prefixes: tuple[str, ...] = ()
    basic_logins: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_config(cls, config: AppConfig, body_caps: dict[str, int] | None = None) -> GuardPolicy:
        upload_cap = config.max_file_size_mb * MB
        return cls(
            auth_required=bool(config.auth), check_host=not (config.listen or config.share),
            allowed_hosts=LOCAL_HOSTS | {h.lower() for h in config.allowed_hosts},
            allowed_origins=allowed_origins(config),
            outputs_dir=Path(os.path.realpath(config.outputs_dir)), upload_cap=upload_cap,
            upload_quota=config.upload_quota_mb * MB,
            # the image editor sends its layers to /component_server as files: the upload limit applies there too
            # the HTTP API (--api) carries images as base64 in JSON: its own limit, 4x the upload limit, applies
            body_caps={"/login": LOGIN_BODY_CAP, UPLOAD_PATH: upload_cap, "/gradio_api/component_server": upload_cap,
                       "/sdapi/": 4 * upload_cap, **(body_caps or {})},
            basic_auth_prefixes=("/sdapi/",) if getattr(config, "api", False) else (),
            basic_logins=tuple(getattr(config, "api_auth", None) or config.auth),
        )

    def body_cap(self, path: str) -> int:
        best = ""
        for prefix in self.body_caps:
            if path.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.body_caps[best] if best else self.default_body_cap


class _TooLarge(Exception):
    pass


class RequestGuard:
    """Pure ASGI middleware; see the module docstring for what it refuses."""

    def __init__(self, app, policy: GuardPolicy, throttle: LoginThrottle | None = None):
        self.app = app
        self.policy = policy
        self.throttle = throttle or LoginThrottle()
        self._uploads: dict[str, list[tuple[float, int]]] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method, path = scope.get("method", "GET"), scope.get("path", "")
        refusal = self._check_host(headers) or self._check_origin(headers, method, path)
        if refusal is None and scope["type"] == "http":
            refusal = await self._check_request(scope, headers, method, path)
        if refusal is not None:
            status, message = refusal
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await JSONResponse({"detail": message}, status_code=status)(scope, receive, send)
            return
        if scope["type"] != "http" or method not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        await self._pass_body(scope, receive, send, headers, method, path)

    # ---- 1, 2: who is calling

    def _check_host(self, headers: Headers):
        if not self.policy.check_host:
            return None
        host = _host_name(headers.get("host", ""))
        if host in self.policy.allowed_hosts:
            return None
        return 400, (f"Host {headers.get('host', '')!r} is not a name of this computer; this app serves "
                     f"127.0.0.1 only (start it with --allowed-host NAME to accept another name)")

    def _check_origin(self, headers: Headers, method: str, path: str):
        origin = headers.get("origin")
        if origin is not None and not own_or_allowed(origin, headers, self.policy.allowed_origins):
            return 403, foreign_origin(origin)
        if path.rstrip("/") == "/logout":
            site = headers.get("sec-fetch-site", "")
            referer = headers.get("referer")
            if site in ("cross-site", "same-site") or (
                    referer and not own_or_allowed(referer, headers, self.policy.allowed_origins)):
                return 403, "logging out is only possible from the app's own page"
        return None

    # ---- 3-6: what is asked

    async def _check_request(self, scope, headers: Headers, method: str, path: str):
        user = session_user(scope, headers)
        if user is None and path.startswith(self.policy.basic_auth_prefixes or ("\0",)):
            user = basic_auth_user(headers.get("authorization", ""), list(self.policy.basic_logins))
        if method in BODY_METHODS:
            if self.policy.auth_required and user is None and path not in LOGIN_PATHS:
                return 401, "Not authenticated"
            cap = self.policy.body_cap(path)
            length = _content_length(headers)
            if length is not None and length > cap:
                return 413, _too_large(path, length, cap)
            if path.startswith(UPLOAD_PATH) and length is not None:
                used = self._uploaded_today(user or "")
                if used + length > self.policy.upload_quota:
                    return 413, (f"upload quota reached: {used:,} bytes uploaded in the last 24 hours; the limit "
                                 f"is {self.policy.upload_quota:,} bytes per user per day")
            if path in LOGIN_PATHS:
                return None  # the user name is in the body: _pass_body checks the throttle
        if method in ("GET", "HEAD") and path.startswith(FILE_PREFIX):
            return self._check_file(scope, path[len(FILE_PREFIX):], user)
        return None

    def _check_file(self, scope, asked: str, user: str | None):
        if asked.startswith(("http://", "https://")):
            return None  # Gradio's own proxy rules apply
        real = Path(os.path.realpath(asked))
        uploads = _blocks_attr(scope, "ldm_uploads")
        if self.policy.auth_required and uploads is not None:
            uploaders = uploads.uploaders(str(real))
            if uploaders is not None and user not in uploaders:
                return 404, f"File not found: {Path(asked).name}"  # another user's upload
        try:
            inside = real.relative_to(self.policy.outputs_dir)
        except ValueError:
            return None  # Gradio's allowed/blocked paths decide (ldm_ui/access.py)
        if self.policy.auth_required and user is None:
            return 401, "Not authenticated"
        not_found = (404, f"File not found: {Path(asked).name}")
        if any(part.startswith(".") for part in inside.parts):
            return not_found
        if self.policy.auth_required:
            owners = _blocks_attr(scope, "ldm_owners")
            if user is None or owners is None or owners.owner_of(real) != user:
                return not_found
        return None

    async def _pass_body(self, scope, receive, send, headers: Headers, method: str, path: str):
        cap = self.policy.body_cap(path)
        started = False
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise _TooLarge
            return message

        answer = bytearray()  # the upload route's answer: the paths it saved
        is_upload = path.startswith(UPLOAD_PATH)

        async def watched(message):
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
            elif is_upload and message["type"] == "http.response.body" and len(answer) < MB:
                answer.extend(message.get("body", b""))
            await send(message)

        status = 0
        user = session_user(scope, headers)
        uploads = _blocks_attr(scope, "ldm_uploads")
        try:
            if path in LOGIN_PATHS:
                await self._login(scope, counted, watched, cap)
            elif _wants_json_check(path, headers):
                body = await _read_all(counted)
                upload_dir = getattr(scope.get("app"), "uploaded_file_dir", None)
                problem = _payload_problem(body, upload_dir)
                if problem is None and uploads is not None:
                    problem = self._note_used_uploads(body, upload_dir, uploads, user)
                if problem:
                    await JSONResponse({"detail": problem}, status_code=400)(scope, receive, send)
                    return
                await self.app(scope, _replay(body, receive), watched)
            else:
                await self.app(scope, counted, watched)
        except _TooLarge:
            if started:
                raise
            await JSONResponse({"detail": _too_large(path, received, cap)}, status_code=413)(scope, receive, send)
            return
        if is_upload and status == 200:
            self._uploads.setdefault(user or "", []).append((time.time(), received))
            if uploads is not None:
                uploads.uploaded(user or "", _json_strings(bytes(answer)))

    def _note_used_uploads(self, body: bytes, upload_dir: str | None, uploads, user: str | None) -> str | None:
        """Record the uploads an event payload uses under its session; with logins, refuse another user's."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        paths = _upload_paths(data, upload_dir)
        if self.policy.auth_required:
            for path in paths:
                uploaders = uploads.uploaders(path)
                if uploaders is not None and (user or "") not in uploaders:
                    return (f"file {Path(path).name!r} is not one of your uploads; upload it first "
                            "(POST /gradio_api/upload) and pass the path that returns")
        session = data.get("session_hash") if isinstance(data, dict) else None
        if paths and isinstance(session, str) and session:
            uploads.used(session, paths)
        return None

    async def _login(self, scope, receive, send, cap: int):
        body = await _read_all(receive)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0].strip()
        address = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.retry_after(user, address)
        if wait > 0:
            log.warning("refused login for user %r from %s: too many failures", user, address)
            response = JSONResponse({"detail": f"Too many failed logins; try again in {int(wait) + 1} s."},
                                    status_code=429, headers={"Retry-After": str(int(wait) + 1)})
            await response(scope, receive, send)
            return
        status = 0

        async def outcome(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, _replay(body, receive), outcome)
        if status == 200:
            self.throttle.succeeded(user)
        elif 400 <= status < 500:
            self.throttle.failed(user, address)

    def _uploaded_today(self, user: str) -> int:
        now = time.time()
        recent = [(t, n) for t, n in self._uploads.get(user, []) if now - t < DAY_S]
        self._uploads[user] = recent
        return sum(n for _, n in recent)


def session_user(scope, headers: Headers) -> str | None:
    """The user signed in with this request's Gradio session cookie, or None."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if not tokens or cookie_id is None:
        return None
    cookies = cookie_parser(headers.get("cookie", ""))
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return tokens.get(token) if token else None


def _payload_problem(body: bytes, upload_dir: str | None) -> str | None:
    """Why a JSON payload is refused: a data: URL, or a file path that is not an upload of this app."""
    if b'"path"' not in body and b"data:" not in body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None  # not JSON: the route answers for itself
    upload_root = os.path.realpath(upload_dir) if upload_dir else None
    for item in _dicts(data):
        url, path = item.get("url"), item.get("path")
        if isinstance(url, str) and url.startswith("data:") or isinstance(path, str) and path.startswith("data:"):
            return ("images and files must be uploaded (POST /gradio_api/upload, or gradio_client's handle_file); "
                    "data: URLs in the payload are not accepted")
        if isinstance(path, str) and _is_file_data(item) and not path.startswith(("http://", "https://")):
            real = os.path.realpath(path)
            if upload_root is None or not (real == upload_root or real.startswith(upload_root + os.sep)):
                return (f"file {Path(path).name!r} is not an upload of this app; upload it first "
                        "(POST /gradio_api/upload) and pass the path that returns")
    return None


def _upload_paths(data: Any, upload_dir: str | None) -> list[str]:
    """The file paths in a payload that lie in the app's upload folder."""
    if not upload_dir:
        return []
    root = os.path.realpath(upload_dir)
    found = []
    for item in _dicts(data):
        path = item.get("path")
        if isinstance(path, str) and _is_file_data(item) and os.path.realpath(path).startswith(root + os.sep):
            found.append(os.path.realpath(path))
    return found


def _json_strings(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    return [item for item in data if isinstance(item, str)] if isinstance(data, list) else []


def _blocks_attr(scope, name: str):
    """What app.py hung on the Blocks (the output owners, the upload registry), or None outside the app."""
    return getattr(getattr(scope.get("app"), "blocks", None), name, None)


def _is_file_data(item: dict) -> bool:
    meta = item.get("meta")
    return (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData") or "orig_name" in item or "url" in item


def _dicts(data: Any, depth: int = 0):
    if depth > 32:
        return
    if isinstance(data, dict):
        yield data
        for value in data.values():
            yield from _dicts(value, depth + 1)
    elif isinstance(data, list):
        for value in data:
            yield from _dicts(value, depth + 1)


def _wants_json_check(path: str, headers: Headers) -> bool:
    return "json" in headers.get("content-type", "") and not path.startswith(UPLOAD_PATH)


async def _read_all(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect as usual

    return replay


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _too_large(path: str, size: int, cap: int) -> str:
    return (f"the request body ({size:,} bytes so far) exceeds the maximum allowed size of {cap} bytes "
            f"({cap / MB:g} MB) for {path}")


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def guard_middleware(config: AppConfig, body_caps: dict[str, int] | None = None) -> list[Middleware]:
    """For launch(app_kwargs={"middleware": ...}); `body_caps` adds caps for other path prefixes."""
    return [Middleware(RequestGuard, policy=GuardPolicy.from_config(config, body_caps))]

