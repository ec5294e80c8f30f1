"""The scale-out nginx config, for real: deploy/nginx/cnn-lens.conf.template runs on
loopback in front of two `streamlit run streamlit_app.py` processes, and one client
session works through it end to end (page, health, WebSocket session, upload).

Debian's nginx is needed (`apt-get install -y nginx`). Without it the tests skip,
unless CNN_LENS_REQUIRE_NGINX=1 (CI sets it) turns the skip into a failure.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import streamlit
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "deploy" / "nginx" / "cnn-lens.conf.template"
APP = REPO / "streamlit_app.py"
STARTUP_S = 90  # two Streamlit servers on a busy 2-core machine
AFFINITY = "cnn_lens_affinity"
HOST = "lens.example"  # the name a class would type; never resolved


def find_nginx() -> str | None:
    """nginx lives in /usr/sbin on Debian, which a non-root PATH may lack."""
    return shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def render(template: str, values: dict[str, str]) -> str:
    """Fill ${CNN_LENS_*} placeholders the way the nginx image's envsubst does;
    a placeholder without a value is an error rather than an empty string."""

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise KeyError(f"template needs {match.group(1)}")
        return values[match.group(1)]

    return re.sub(r"\$\{(CNN_LENS_[A-Z_]+)\}", fill, template)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    """(status, headers, body) of one HTTP request, no proxies from the environment."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def wait_healthy(port: int, procs: list[subprocess.Popen], deadline: float) -> None:
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args[:4]} exited with {p.returncode}"
        try:
            if request(port, "GET", "/_stcore/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"nothing healthy on port {port} after {STARTUP_S} s")


@dataclass
class Stack:
    port: int  # nginx
    backends: list[int]
    access_log: Path
    error_log: Path
    prefix: Path

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines()


def nginx_main_conf(prefix: Path, site: Path) -> str:
    """A main nginx.conf that needs no root: pid, logs and temp dirs under `prefix`.
    The site file is included at http level, exactly as in the nginx image."""
    temps = "\n".join(
        f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
daemon off;
events {{ worker_connections 256; }}
http {{
{temps}
    include {site};
}}
"""


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    nginx = find_nginx()
    if nginx is None:
        if os.environ.get("CNN_LENS_REQUIRE_NGINX") == "1":
            pytest.fail("nginx is not installed (apt-get install -y nginx)")
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    assert APP.exists(), f"{APP} is missing"
    # Not tmp_path: when CI runs as root, nginx workers run as `nobody` and must
    # reach the temp dirs, so the folder is world-readable (and removed after).
    prefix = Path(tempfile.mkdtemp(prefix="cnn-lens-nginx-"))
    prefix.chmod(0o755)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / kind).mkdir(mode=0o777)
        (prefix / kind).chmod(0o777)
    backends = [free_port(), free_port()]
    port = free_port()
    procs: list[subprocess.Popen] = []
    try:
        for i, backend in enumerate(backends):
            log = open(prefix / f"streamlit-{i}.log", "wb")  # noqa: SIM115 - lives as long as the process
            cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(backend)]
            cmd += ["--server.address", "127.0.0.1"]
            # cwd=REPO: the servers read the project's .streamlit/config.toml.
            procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
        servers = " ".join(f"server 127.0.0.1:{b};" for b in backends)
        site = prefix / "cnn-lens.conf"
        site.write_text(
            render(
                TEMPLATE.read_text(),
                {
                    "CNN_LENS_UPSTREAM_SERVERS": servers,
                    "CNN_LENS_LISTEN": f"127.0.0.1:{port}",
                    "CNN_LENS_ACCESS_LOG": str(prefix / "access.log"),
                },
            )
        )
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_main_conf(prefix, site))
        base = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
        check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        procs.append(subprocess.Popen(base, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + STARTUP_S
        for backend in backends:
            wait_healthy(backend, procs, deadline)
        wait_healthy(port, procs, deadline)
        yield Stack(port, backends, prefix / "access.log", prefix / "error.log", prefix)
    finally:
        stop(procs)
        shutil.rmtree(prefix, ignore_errors=True)


class Client:
    """A browser-like client: keeps the cookies it is given."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    def get(self, path: str) -> tuple[int, bytes]:
        status, headers, body = request(self.port, "GET", path, self.headers())
        for line in headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(line)
            self.cookies.update({k: m.value for k, m in jar.items()})
        return status, body


def upstreams(stack: Stack, affinity: str) -> set[str]:
    """Backends nginx chose for requests that carried this affinity key."""
    found = set()
    for line in stack.log_lines():
        if line.endswith(f"affinity={affinity}"):
            found.add(re.search(r"upstream=(\S+)", line).group(1))
    return found


def open_session(stack: Stack, client: Client, origin_host: str = HOST):
    """Open the app's WebSocket through nginx as the Streamlit frontend does, for a
    page served from http://<origin_host>:<port>. The socket goes to loopback, but
    the Host header names HOST: Streamlit trusts loopback origins anyway, so only a
    non-loopback name shows that nginx forwards the Host (with its port) intact."""
    return connect(
        f"ws://{HOST}:{stack.port}/_stcore/stream",
        sock=socket.create_connection(("127.0.0.1", stack.port), timeout=30),
        origin=f"http://{origin_host}:{stack.port}",
        subprotocols=["streamlit", client.cookies["_streamlit_xsrf"]],
        additional_headers=client.headers(),
        proxy=None,
        open_timeout=30,
    )


def test_page_and_health_through_proxy(stack: Stack) -> None:
    client = Client(stack.port)
    status, body = client.get("/")
    assert status == 200
    assert b"<noscript>" in body or b'<div id="root">' in body
    assert client.get("/_stcore/health") == (200, b"ok")
    assert AFFINITY in client.cookies and "_streamlit_xsrf" in client.cookies


def test_session_end_to_end_is_sticky(stack: Stack) -> None:
    """WebSocket upgrade, a script run, and an upload all reach one backend. The
    upload proves it: Streamlit refuses (400) an upload for a session it does not
    hold, which is what happens without sticky sessions."""
    client = Client(stack.port)
    assert client.get("/")[0] == 200
    assert client.get("/_stcore/health")[0] == 200  # sets the XSRF cookie, as in a browser
    with open_session(stack, client) as ws:
        assert ws.response.status_code == 101
        assert ws.subprotocol == "streamlit"
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        ws.send(rerun.SerializeToString())
        session_id = None
        end = time.monotonic() + 60
        while session_id is None and time.monotonic() < end:
            msg = ForwardMsg()
            msg.ParseFromString(ws.recv(timeout=60))
            if msg.WhichOneof("type") == "new_session":
                session_id = msg.new_session.initialize.session_id
        assert session_id, "no new_session message through the proxy"

        payload = os.urandom(2 * 2**20)  # over nginx's in-memory buffers: would spool if allowed
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + payload
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = client.headers() | {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-Xsrftoken": client.cookies["_streamlit_xsrf"],
        }
        status, _, text = request(stack.port, "PUT", f"/_stcore/upload_file/{session_id}/f1", headers, body)
        assert status == 204, text
        assert "temporary file" not in stack.error_log.read_text()  # streamed, not spooled to disk
        for _ in range(10):
            assert client.get("/_stcore/health")[0] == 200

    time.sleep(0.5)  # nginx logs the WebSocket line when it closes
    lines = [line for line in stack.log_lines() if line.endswith(f"affinity={client.cookies[AFFINITY]}")]
    assert any('"GET /_stcore/stream HTTP/1.1" 101' in line for line in lines)
    assert len(lines) >= 13
    assert len(upstreams(stack, client.cookies[AFFINITY])) == 1


def test_new_browsers_spread_over_both_backends(stack: Stack) -> None:
    """40 cookie-less clients each get a random key; both replicas get some. (All on
    one replica would happen with probability about 1e-8.)"""
    keys = []
    for _ in range(40):
        client = Client(stack.port)
        assert client.get("/_stcore/health")[0] == 200
        keys.append(client.cookies[AFFINITY])
    assert len(set(keys)) == 40
    used = set().union(*(upstreams(stack, k) for k in keys))
    assert used == {f"127.0.0.1:{b}" for b in stack.backends}


def test_foreign_origin_websocket_refused(stack: Stack) -> None:
    """Streamlit's CORS protection still works behind the proxy."""
    client = Client(stack.port)
    client.get("/_stcore/health")
    with pytest.raises(InvalidStatus) as info:
        open_session(stack, client, origin_host="evil.example").close()
    assert info.value.response.status_code == 403


def test_upload_without_xsrf_token_refused(stack: Stack) -> None:
    client = Client(stack.port)
    client.get("/_stcore/health")
    status, _, _ = request(
        stack.port, "PUT", "/_stcore/upload_file/s/f", client.headers() | {"Content-Type": "multipart/form-data"}, b""
    )
    assert status == 403


def test_oversized_upload_refused_by_proxy(stack: Stack) -> None:
    """nginx answers 413 from the Content-Length alone, before any body is sent."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    try:
        conn.putrequest("PUT", "/_stcore/upload_file/s/f")
        conn.putheader("Content-Length", str(22 * 2**20))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413
    finally:
        conn.close()


def test_large_response_not_spooled_to_disk(stack: Stack) -> None:
    """Responses (the user's image comes back as /media/...) pass through memory
    only. A slow client makes nginx hold what the app already sent; allowed to, it
    would write that to a temporary file (and log a warning). Streamlit's biggest
    JS bundle, fetched by a client with a tiny receive buffer that waits before
    reading, must arrive whole with no such file."""
    static = Path(streamlit.__file__).parent / "static"
    biggest = max(static.rglob("*.js"), key=lambda p: p.stat().st_size)
    assert biggest.stat().st_size > 1 << 20
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", stack.port))
        path = "/" + biggest.relative_to(static).as_posix()
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        time.sleep(1.5)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == biggest.stat().st_size
    log = stack.error_log.read_text()
    assert "temporary file" not in log, log
    assert not [p for kind in ("client_body", "proxy") for p in (stack.prefix / kind).rglob("*") if p.is_file()]
