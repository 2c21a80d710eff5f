"""The browser-side defences as a real server shows them (README, Security): starts the demo
(`manage.py up`: daphne, the conductor, one synthetic worker) on a free port with its own state,
then prints the response headers of a page, a take and the CSV, which WebSocket origins open, and
the login throttle's figures. Run: .venv/bin/python tests/probe_security.py"""

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, ROOT)
from tests.live import free_port  # noqa: E402

tmp = tempfile.mkdtemp()
port = free_port()
env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
env.update(DEBUG="true", WORKSHOP_LOCAL_DIR=tmp, MEDIA_ROOT=tmp + "/media")
proc = subprocess.Popen(
    [sys.executable, "manage.py", "up", "--port", str(port), "--workers", "1", "--frame-delay", "0.01"],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
)
lines = []
try:
    while not any("Workshop running" in seen for seen in lines):
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise SystemExit("".join(lines))
        lines.append(line)
    out = "".join(lines)
    url = f"http://127.0.0.1:{port}"
    key = open(tmp + "/secret_key").read().strip()
    print("secret_key file mode", oct(os.stat(tmp + "/secret_key").st_mode & 0o777), "length", len(key))
    pw = {u: p for u, p in re.findall(r"(filmmaker\d)\s+(\S+)", out)}

    def login(c, user, password):
        page = c.get("/accounts/login/")
        tok = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return c.post(
            "/accounts/login/", data={"csrfmiddlewaretoken": tok, "username": user, "password": password}
        )

    def show(
        title,
        r,
        names=(
            "content-type",
            "content-security-policy",
            "permissions-policy",
            "cache-control",
            "x-frame-options",
            "x-content-type-options",
            "referrer-policy",
            "cross-origin-opener-policy",
            "content-disposition",
            "accept-ranges",
            "content-length",
            "set-cookie",
            "retry-after",
        ),
    ):
        print(f"\n== {title}: {r.request.method} {r.request.url.path} -> {r.status_code}")
        for k, v in r.headers.multi_items():
            if k.lower() in names:
                print(f"   {k}: {v}")

    c = httpx.Client(base_url=url, timeout=30)
    show("login page", c.get("/accounts/login/"))
    r = login(c, "filmmaker1", pw["filmmaker1"])
    print("login", r.status_code, r.headers.get("location"))
    rnd = c.get("/", follow_redirects=False).headers["location"]
    page = c.get(rnd)
    show("round page", page)
    # submit a generation and wait for its take
    tok = re.search(r'name="submit_token" value="([^"]+)"', page.text).group(1)
    tmpl = re.search(r'name="template" value="(\d+)"', page.text) or re.search(
        r'<option value="(\d+)"', page.text
    )
    csrf = re.search(r'"x-csrftoken": "([^"]+)"', page.text).group(1)
    form = {
        "template": tmpl.group(1),
        "prompt": "a kite over cliffs",
        "seed": "1",
        "frames": "9",
        "width": "64",
        "height": "64",
        "fps": "12",
        "submit_token": tok,
    }
    r = c.post(rnd + "generate", data=form, headers={"X-CSRFToken": csrf, "HX-Request": "true"})
    print("submit", r.status_code)
    take = None
    for _ in range(240):
        html = c.get(rnd).text
        m = re.search(r"/takes/(\d+)/file", html)
        if m:
            take = m.group(1)
            break
        time.sleep(0.5)
    show("a take", c.get(f"/takes/{take}/file", headers={"Range": "bytes=0-99"}))
    show("the CSV", c.get("/gallery/generations.csv"))
    # WebSocket origins against the real daphne
    rid = re.search(r"/rounds/(\d+)/", rnd).group(1)
    cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())

    async def ws(origin):
        try:
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws/rounds/{rid}/",
                origin=origin,
                additional_headers={"Cookie": cookie},
            ) as s:
                await asyncio.wait_for(s.recv(), 10)
                return "opened"
        except Exception as e:
            return f"refused ({type(e).__name__}: {str(e)[:60]})"

    for o in (url, "http://127.0.0.1:9999", f"https://127.0.0.1:{port}", f"http://localhost:{port}"):
        print(f"\nWebSocket Origin {o}: {asyncio.run(ws(o))}")
    # Throttling: wrong passwords for filmmaker2 until refused
    print("\n== throttling (filmmaker2)")
    t0 = time.monotonic()
    n = 0
    for i in range(1, 31):
        r = login(httpx.Client(base_url=url, timeout=30), "filmmaker2", "wrong-password")
        n = i
        if r.status_code == 429:
            break
    print(
        f"wrong password #{n} answered {r.status_code} after {time.monotonic() - t0:.1f} s;",
        f"Retry-After {r.headers.get('retry-after')}",
    )
    print("   message:", " ".join(re.search(r'id="lockout">(.*?)</p>', r.text, re.S).group(1).split()))
    r = login(httpx.Client(base_url=url, timeout=30), "filmmaker2", pw["filmmaker2"])
    print("right password during the lockout:", r.status_code, "Retry-After", r.headers.get("retry-after"))
    r = login(httpx.Client(base_url=url, timeout=30), "filmmaker3", pw["filmmaker3"])
    print("another filmmaker from the same address:", r.status_code, r.headers.get("location"))
    show("the lockout page", login(httpx.Client(base_url=url, timeout=30), "filmmaker2", "x"))
finally:
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=60)
    except Exception:
        proc.kill()
