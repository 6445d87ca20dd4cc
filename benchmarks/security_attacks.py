"""Replay the red team's attacks (issue 15) against a running app and print status codes and server RSS growth.

    python benchmarks/security_attacks.py [PROJECT_ROOT]

Starts PROJECT_ROOT/app.py (default: this checkout) twice on loopback, on the built-in demo model: once with
two logins (alice, the admin, and bob) and --listen, once with no login. Point PROJECT_ROOT at an older
checkout (`git archive <commit> | tar -x -C /tmp/before`) to get the "before" figures in the same run of this
script. Loops are bounded; everything stays on 127.0.0.1. Not part of the test suite.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

MB = 1024 * 1024
ALICE, BOB = ("alice", "alice-long-password"), ("bob", "bob-long-password")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app(root: Path, outputs: Path, *flags: str):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--outputs-dir", str(outputs), *flags],
                               cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/gradio_api/app_id", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def measure(server: psutil.Process, attack) -> tuple[str, float]:
    """(what the attack got, the server's peak RSS growth in MB while it ran, sampled every 2 ms)."""
    start = server.memory_info().rss
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.wait(0.002):
            try:
                peak[0] = max(peak[0], server.memory_info().rss)
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = attack()
    except Exception as error:  # noqa: BLE001 - an attack that errors is reported, not fatal
        result = f"error: {type(error).__name__}: {str(error)[:80]}"
    finally:
        done.set()
        sampler.join()
    return str(result), (peak[0] - start) / MB


def raw_post(url: str, path: str, size: int, cookie: str = "") -> int | str:
    """POST a `size`-byte JSON-ish body in 1 MB pieces; the status, or how the server cut us off."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {size}\r\n{cookie}Connection: close\r\n\r\n").encode())
        try:
            sock.sendall(b"[" + b" " * (size - 1))
        except OSError:
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else "cut off"


def png_bomb(path: Path, side: int = 12000) -> Path:
    """An RGB PNG of side x side black pixels (432 MB decoded), compressed row by row to a few hundred KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(b"\x00" * (3 * side + 1)) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def login(url: str, user: tuple[str, str]) -> httpx.Client:
    client = httpx.Client(timeout=300)
    client.post(url + "/login", data={"username": user[0], "password": user[1]})
    return client


def fn_index(url: str, client: httpx.Client, name_in_elem: str) -> int | None:
    config = client.get(url + "/config").json()
    ids = {c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == name_in_elem}
    for index, dep in enumerate(config["dependencies"]):
        if ids & set(dep.get("inputs", [])) and dep.get("targets") and dep["targets"][0][1] in ("input",):
            return dep.get("id", index)
    return None


def status_of(answer) -> str:
    text = str(answer)
    for mark in ("too large to decode", "exceeds limit", "data: URLs", "Failed", "Done", "Error", "error",
                 "no generation parameters"):
        if mark in text:
            return mark
    return text[:60]


def run(root: Path) -> list[tuple[str, str, float]]:
    from gradio_client import Client, handle_file

    rows: list[tuple[str, str, float]] = []
    work = Path(tempfile.mkdtemp(prefix="attacks-"))
    bomb = png_bomb(work / "bomb.png")
    auth = ["--listen", "--api", "--auth", ":".join(ALICE), "--auth", ":".join(BOB)]
    with app(root, work / "outputs", *auth) as (url, server):
        alice, bob = login(url, ALICE), login(url, BOB)
        cookie = "Cookie: " + "; ".join(f"{k}={v}" for k, v in alice.cookies.items()) + "\r\n"
        rows.append(("1 anonymous 100 MB POST /queue/join", *measure(server, lambda: raw_post(
            url, "/gradio_api/queue/join", 100 * MB))))
        rows.append(("1 signed-in 100 MB POST /queue/join", *measure(server, lambda: raw_post(
            url, "/gradio_api/queue/join", 100 * MB, cookie))))
        files = [("files", (f"{i}.png", b"\x00" * (19 * MB), "image/png")) for i in range(3)]
        rows.append(("1 upload 3 x 19 MB in one request", *measure(server, lambda: alice.post(
            url + "/gradio_api/upload", files=files).status_code)))
        client = Client(url, auth=ALICE, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]

        def predict(name, **values):
            for param in api[name]["parameters"]:
                values.setdefault(param["parameter_name"], param.get("parameter_default"))
            return status_of(client.predict(api_name=name, **values))

        bomb_file = handle_file(str(bomb))
        attempts = {
            "2 bomb -> PNG info": lambda: status_of(client.predict(bomb_file, api_name="/pnginfo")),
            "2 bomb -> latent inspector": lambda: status_of(client.predict(bomb_file, None,
                                                                           api_name="/inspect_latents")),
            "2 bomb -> ControlNet image": lambda: predict("/txt2img", prompt="x", steps=2, controlnet1_enabled=True,
                                                          controlnet1_image=bomb_file, controlnet1_model="demo-canny"),
            "2 bomb -> interpolate images": lambda: predict("/interpolate", mode="images", prompt="x", frames=2,
                                                            steps=2, image_a=bomb_file, image_b=bomb_file),
            "2 bomb -> inpaint editor": lambda: predict("/inpaint", editor={"background": bomb_file, "layers": [],
                                                                            "composite": None}, prompt="x", steps=2),
        }
        for name, attempt in attempts.items():
            rows.append((name, *measure(server, attempt)))
        data_url = "data:image/png;base64," + base64.b64encode(bomb.read_bytes()).decode()
        rows.append(("2 bomb as data: URL -> img2img", *measure(server, lambda: alice.post(
            url + "/gradio_api/call/img2img", json={"data": [{"url": data_url, "path": None, "meta": {
                "_type": "gradio.FileData"}}] + [None] * (len(api["/img2img"]["parameters"]) - 1)}).status_code)))
        predict("/txt2img", prompt="a red circle", steps=2, seed=1)
        predict("/interpolate", mode="seeds", prompt="a red circle", frames=2, steps=2, seed=1, seed_b=2)
        made = sorted(p for p in (work / "outputs").rglob("*") if p.is_file())
        codes = [bob.get(f"{url}/gradio_api/file={p}").status_code for p in made[:130]]
        rows.append((f"3 bob fetches alice's {len(made)} files", f"{codes.count(200)} x 200, "
                     f"{len(codes) - codes.count(200)} refused ({sorted(set(codes))})", 0.0))
        own = [alice.get(f"{url}/gradio_api/file={p}").status_code for p in made[:5]]
        rows.append(("3 alice fetches her own files", str(sorted(set(own))), 0.0))
        dot = work / "outputs" / ".ssh" / "id_rsa"
        dot.parent.mkdir(parents=True)
        dot.write_text("key")
        rows.append(("4 alice fetches outputs/.ssh/id_rsa", str(alice.get(f"{url}/gradio_api/file={dot}").status_code),
                     0.0))
        port = url.rsplit(":", 1)[1]  # a LAN name in Host, as a --listen user's browser sends it
        evil = alice.get(url + "/config", headers={"Origin": "https://evil.example", "Host": f"ldm-box.lan:{port}"})
        rows.append(("6 Origin: evil.example GET /config", f"{evil.status_code} ACAO="
                     f"{evil.headers.get('access-control-allow-origin')}", 0.0))
        preflight = {"Origin": "https://evil.example", "Host": f"ldm-box.lan:{port}",
                     "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        for path in ("/gradio_api/queue/join", "/gradio_api/upload", "/sdapi/v1/txt2img"):
            answer = alice.options(url + path, headers=preflight)
            rows.append((f"6 evil preflight OPTIONS {path}", f"{answer.status_code} ACAO="
                         f"{answer.headers.get('access-control-allow-origin')} credentials="
                         f"{answer.headers.get('access-control-allow-credentials')}", 0.0))
        toggle = fn_index(url, bob, "extension-wildcards-enabled")
        answer = bob.post(url + "/gradio_api/run/predict", json={"data": [False], "fn_index": toggle,
                                                                 "session_hash": "b"})
        table = str((answer.json().get("data") or ["", ""])[1]) if answer.status_code == 200 else ""
        state = "off" if 'data-extension="wildcards" data-state="off"' in table else "enabled"
        rows.append(("7 bob turns wildcards off", f"{answer.status_code}, wildcards {state}", 0.0))
        planted = Path(tempfile.gettempdir()) / "gradio" / "planted" / "note.txt"
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_text("x")
        rows.append(("9 planted file in <tmp>/gradio", str(alice.get(f"{url}/gradio_api/file={planted}").status_code),
                     0.0))
        upload_client = Client(url, auth=ALICE, verbose=False)
        picture = work / f"alices-photo-{os.getpid()}.png"
        picture.write_bytes(base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="))
        upload_client.predict(handle_file(str(picture)), api_name="/pnginfo")
        uploaded = next(Path(tempfile.gettempdir()).glob(f"*/*/{picture.name}"), None)
        rows.append(("9 bob fetches alice's upload by path", str(bob.get(f"{url}/gradio_api/file={uploaded}").status_code)
                     if uploaded else "upload not found", 0.0))
        upload_client.close()  # alice's session ends
        # a benchmark, not a test: poll for the unload event's effect, up to 30 s (gradio_client stops its
        # heartbeat at the next 15 s beat; a browser closing its tab drops the connection at once)
        for _ in range(300):
            if not (uploaded and uploaded.exists()):
                break
            time.sleep(0.1)
        rows.append(("9 alice's upload 30 s after her session ended",
                     "still on disk" if uploaded and uploaded.exists() else "deleted", 0.0))
        foreign = alice.post(url + "/gradio_api/queue/join", json={"data": [{"path": "/etc/hostname", "meta": {
            "_type": "gradio.FileData"}}], "fn_index": 0, "session_hash": "x"})
        rows.append(("10 foreign file path in a payload", str(foreign.status_code), 0.0))
        guesser = httpx.Client(timeout=30)
        for attempt in range(6):
            guesser.post(url + "/login", data={"username": "alice", "password": f"guess{attempt}"})
        rows.append(("11 7th login after 6 failures (right password)", str(guesser.post(
            url + "/login", data={"username": ALICE[0], "password": ALICE[1]}).status_code), 0.0))
        forced = alice.get(url + "/logout", headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
        rows.append(("11 cross-site GET /logout", str(forced.status_code), 0.0))
    with app(root, work / "outputs2") as (url, server):
        rebind = httpx.get(url + "/config", headers={"Host": "rebind.attacker.example"}, timeout=30)
        rows.append(("5 Host: rebind.attacker.example GET /config", str(rebind.status_code), 0.0))
    home = subprocess.run([sys.executable, "-c", "import sys; from ldm_ui.config import config_from_args as c; "
                           "c(['--outputs-dir', sys.argv[1]])", str(Path.home())], cwd=root, capture_output=True)
    rows.append(("4 --outputs-dir ~", "refused" if home.returncode else "accepted", 0.0))
    shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    rows = run(root)
    width = max(len(r[0]) for r in rows)
    print(f"attacks against {root}")
    for name, result, grown in rows:
        print(f"{name:<{width}}  {result:<40}  RSS {grown:+7.0f} MB")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
