"""Attacks on the running app's HTTP layer (ldm_ui/guard.py), each refused, with the legitimate path beside it.

Every test starts the real app on loopback and sends what an attacker would: huge bodies before signing in,
forged Host and Origin headers, data: URLs and foreign file paths in payloads, password guessing, a
cross-site logout. Loops are bounded; memory growth is read from this process (the server runs in it).
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
from contextlib import contextmanager
from typing import Iterator

import httpx
import psutil
import pytest

from browser_support import running_app

USER, PASSWORD = "alice", "correct horse battery staple"
BOB, BOB_PASSWORD = "bob", "another long passphrase"
MB = 1024 * 1024


@pytest.fixture
def two_users(app_config):
    app_config.listen = True
    app_config.auth = [(USER, PASSWORD), (BOB, BOB_PASSWORD)]
    return app_config


@contextmanager
def signed_in(url: str, user: str = USER, password: str = PASSWORD) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        assert client.post(url + "/login", data={"username": user, "password": password}).status_code == 200
        yield client


class PeakRss:
    """The highest RSS of this process (the server runs in it) while the block runs, sampled every 2 ms."""

    def __enter__(self):
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / MB


def raw_post(url: str, path: str, length: int, sent: bytes = b"{", extra: str = "") -> tuple[int, bytes]:
    """Announce a `length`-byte body, send only its first bytes, and read the answer (a server that waits to
    read the whole body would hang here; the socket timeout turns that into a failure)."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {length}\r\n{extra}Connection: close\r\n\r\n").encode() + sent)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[-1]


def test_a_stranger_is_refused_before_the_body_is_read(two_users):
    with running_app(two_users) as (url, _, _), PeakRss() as memory:
        for _ in range(4):  # the red team's 100 MB bodies, four times
            status, body = raw_post(url, "/gradio_api/queue/join", 100 * MB)
            assert status == 401 and b"Not authenticated" in body
        # streamed without a length: refused at the first byte too, the rest never read
        with httpx.Client(timeout=30) as stranger:
            def chunks():
                for _ in range(50):
                    yield b" " * MB
            answer = stranger.post(url + "/gradio_api/queue/join", content=chunks(),
                                   headers={"content-type": "application/json"})
            assert answer.status_code == 401
    assert memory.growth_mb < 50, f"RSS grew by {memory.growth_mb:.0f} MB"


def test_a_signed_in_body_is_capped_and_small_ones_pass(two_users):
    with running_app(two_users) as (url, _, _), signed_in(url) as alice:
        cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
        status, body = raw_post(url, "/gradio_api/queue/join", 100 * MB, extra=f"Cookie: {cookie}\r\n")
        assert status == 413 and b"maximum allowed size of 2097152 bytes" in body

        def chunks():
            for _ in range(8):
                yield b" " * MB
        streamed = alice.post(url + "/gradio_api/queue/join", content=chunks(),
                              headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "2097152" in streamed.text
        # the same route with a real, small payload is served (422: Gradio's own answer to a bad event)
        small = alice.post(url + "/gradio_api/queue/join", json={"data": [], "fn_index": 99999,
                                                                  "session_hash": "s"})
        assert small.status_code not in (401, 413)


def test_uploads_are_capped_per_request_and_per_user(two_users):
    two_users.max_file_size_mb = 1
    two_users.upload_quota_mb = 2
    with running_app(two_users) as (url, _, _), signed_in(url) as alice, signed_in(url, BOB, BOB_PASSWORD) as bob:
        three = [("files", (f"{i}.png", b"\x00" * (MB * 6 // 10), "image/png")) for i in range(3)]
        answer = alice.post(url + "/gradio_api/upload", files=three)
        assert answer.status_code == 413 and "1048576" in answer.text  # 3 x 0.6 MB in one request
        for _ in range(3):  # within the per-request limit, until the day's quota of 2 MB is used
            assert alice.post(url + "/gradio_api/upload",
                              files={"files": ("ok.png", b"\x00" * (MB * 6 // 10), "image/png")}).status_code == 200
        over = alice.post(url + "/gradio_api/upload", files={"files": ("more.png", b"\x00" * (MB // 2), "image/png")})
        assert over.status_code == 413 and "quota" in over.text
        assert bob.post(url + "/gradio_api/upload",
                        files={"files": ("b.png", b"\x00" * 1000, "image/png")}).status_code == 200


def test_dns_rebinding_host_is_refused_on_localhost(app_config):
    with running_app(app_config) as (url, _, _), httpx.Client(timeout=30) as browser:
        for path in ("/config", "/gradio_api/info", "/"):
            answer = browser.get(url + path, headers={"Host": "rebind.attacker.example"})
            assert answer.status_code == 400 and "rebind.attacker.example" in answer.text, path
        assert browser.post(url + "/gradio_api/queue/join", json={}, headers={"Host": "rebind.attacker.example"}
                            ).status_code == 400
        port = urllib.parse.urlsplit(url).port
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            assert browser.get(url + "/config", headers={"Host": host}).status_code == 200


CORS_PATHS = ("/config", "/gradio_api/queue/join", "/gradio_api/upload", "/gradio_api/file=outputs/x.png",
              "/sdapi/v1/options", "/sdapi/v1/txt2img", "/")
FRIEND = "https://friend.example"


def _cors_headers(answer: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.lower().startswith("access-control-")}


@pytest.mark.parametrize("mode", ["localhost", "listen+auth"])
def test_foreign_origins_are_refused_and_configured_ones_allowed(app_config, mode):
    """Gradio's own CORS layer reflects any Origin, with credentials, on a LAN address and answers preflights
    before any middleware of ours; on every route, for GET, POST and the preflight, only the app's own origin
    and --cors-allow-origin ones may get CORS headers."""
    app_config.api = True
    app_config.cors_allow_origins = [FRIEND]
    if mode == "listen+auth":
        app_config.listen = True
        app_config.auth = [(USER, PASSWORD), (BOB, BOB_PASSWORD)]
    with running_app(app_config) as (url, _, _), httpx.Client(timeout=30) as browser:
        if app_config.auth:
            assert browser.post(url + "/login", data={"username": USER, "password": PASSWORD}).status_code == 200
            browser.auth = (USER, PASSWORD)  # the /sdapi/v1 routes sign in with HTTP Basic
        port = urllib.parse.urlsplit(url).port
        # on --listen the page is reached by the machine's LAN address: Gradio's layer trusts any Origin there
        host = f"192.168.1.50:{port}" if app_config.listen else f"127.0.0.1:{port}"
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        for origin in ("https://evil.example", "null", "http://192.168.1.50"):
            for path in CORS_PATHS:
                for method in ("GET", "POST", "OPTIONS"):
                    answer = browser.request(method, url + path, content=b"{}" if method == "POST" else None,
                                             headers={"Host": host, "Origin": origin,
                                                      **(preflight if method == "OPTIONS" else {})})
                    assert answer.status_code == 403, (origin, method, path, answer.status_code)
                    assert _cors_headers(answer) == {}, (origin, method, path, _cors_headers(answer))
                    assert "components" not in answer.text
        # the configured origin: preflights and answers name it, and only it
        for path in CORS_PATHS:
            answer = browser.options(url + path, headers={"Host": host, "Origin": FRIEND, **preflight})
            assert answer.status_code == 200, path
            assert answer.headers["access-control-allow-origin"] == FRIEND
            assert answer.headers["access-control-allow-credentials"] == "true"
            assert answer.headers["access-control-allow-headers"] == "content-type"
        config = browser.get(url + "/config", headers={"Host": host, "Origin": FRIEND})
        assert config.status_code == 200 and "components" in config.text
        assert config.headers["access-control-allow-origin"] == FRIEND
        options = browser.get(url + "/sdapi/v1/options", headers={"Host": host, "Origin": FRIEND})
        assert options.status_code == 200 and options.headers["access-control-allow-origin"] == FRIEND
        join = browser.post(url + "/gradio_api/queue/join", json={"data": []}, headers={"Host": host, "Origin": FRIEND})
        assert "Session hash not found" in join.text  # Gradio's own answer: the route ran
        assert join.headers["access-control-allow-origin"] == FRIEND
        # the app's own page (same host and port) works, as does a request with no Origin at all
        own = f"http://{host}"
        assert browser.get(url + "/config", headers={"Host": host, "Origin": own}).status_code == 200
        assert browser.options(url + "/config", headers={"Host": host, "Origin": own, **preflight}).status_code == 200
        assert browser.get(url + "/config", headers={"Host": host}).status_code == 200


def test_payload_data_urls_and_foreign_paths_are_refused(two_users, tmp_path):
    import base64

    png = tmp_path / "bomb-header.png"
    from PIL import Image

    Image.new("L", (8, 8)).save(png)
    data_url = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    with running_app(two_users) as (url, _, demo), signed_in(url) as alice:
        body = {"data": [{"url": data_url, "path": None, "meta": {"_type": "gradio.FileData"}}], "fn_index": 0,
                "session_hash": "x"}
        answer = alice.post(url + "/gradio_api/queue/join", json=body)
        assert answer.status_code == 400 and "data: URLs" in answer.text
        secret = {"path": "/etc/shadow", "meta": {"_type": "gradio.FileData"}}
        answer = alice.post(url + "/gradio_api/queue/join", json={"data": [secret], "fn_index": 0,
                                                                   "session_hash": "x"})
        assert answer.status_code == 400 and "'shadow' is not an upload" in answer.text
        assert "/etc" not in answer.text and str(two_users.models_dir) not in answer.text
        # an uploaded file's path is accepted
        uploaded = alice.post(url + "/gradio_api/upload", files={"files": ("a.png", png.read_bytes(), "image/png")})
        path = uploaded.json()[0]
        ok = alice.post(url + "/gradio_api/queue/join", json={"data": [{"path": path, "meta": {
            "_type": "gradio.FileData"}}], "fn_index": 99999, "session_hash": "x"})
        assert ok.status_code not in (400, 401, 413)


def test_password_guessing_is_locked_out_per_user_and_per_address(two_users, caplog):
    with running_app(two_users) as (url, _, _), httpx.Client(timeout=30) as guesser:
        with caplog.at_level("WARNING", logger="ldm_ui.login_throttle"):
            for attempt in range(5):
                wrong = guesser.post(url + "/login", data={"username": USER, "password": f"guess{attempt}"})
                assert wrong.status_code == 400
        assert sum("failed login for user 'alice'" in r.getMessage() for r in caplog.records) == 5
        locked = guesser.post(url + "/login", data={"username": USER, "password": PASSWORD})
        assert locked.status_code == 429 and "try again" in locked.text and int(locked.headers["Retry-After"]) > 0
        with signed_in(url, BOB, BOB_PASSWORD):  # another user from the same address still signs in
            pass
        for attempt in range(15):  # 20 failures from one address lock the address for every name
            guesser.post(url + "/login", data={"username": f"user{attempt}", "password": "x"})
        assert guesser.post(url + "/login", data={"username": BOB, "password": BOB_PASSWORD}).status_code == 429


def test_logout_cannot_be_triggered_from_another_site(two_users):
    with running_app(two_users) as (url, _, _), signed_in(url) as alice:
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Referer": "https://evil.example/page"}):
            forced = alice.get(url + "/logout", headers=headers, follow_redirects=False)
            assert forced.status_code == 403
            assert alice.get(url + "/config").status_code == 200, "still signed in"
        own = alice.get(url + "/logout", headers={"Sec-Fetch-Site": "same-origin", "Referer": url + "/"},
                        follow_redirects=False)
        assert own.status_code == 302
        assert alice.get(url + "/config").status_code == 401
