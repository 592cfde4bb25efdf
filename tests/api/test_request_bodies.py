"""Request bodies on a real uvicorn server: chunked uploads are authenticated before they are
read and cut at their route's limit; measured by what the server spooled to disk."""

from __future__ import annotations

import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.api.conftest import Api, LiveServer

MiB = 1 << 20
UPLOAD = "/api/v1/observations/ingest/upload"


class SpoolMeter:
    """Largest total size of the spool files this process opened while the meter ran.

    Starlette spools multipart files to the system temporary folder
    (``tempfile.gettempdir()``) and unlinks them at once (O_TMPFILE), so they are found
    through ``/proc/self/fd`` as deleted files under that folder; the files already open
    when the meter starts (pytest's capture files among them) are not counted.
    """

    def __init__(self) -> None:
        self.folder = tempfile.gettempdir()
        self.peak = 0
        self._before = set(self._spooled())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _spooled(self) -> dict[tuple[str, int, int], int]:
        """(fd, device, inode) -> size of every open deleted file under the folder."""
        files: dict[tuple[str, int, int], int] = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith(self.folder) and target.endswith(" (deleted)"):
                    st = os.stat(f"/proc/self/fd/{fd}")
                    files[(fd, st.st_dev, st.st_ino)] = st.st_size
            except OSError:
                continue
        return files

    def _total(self) -> int:
        return sum(n for key, n in self._spooled().items() if key not in self._before)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(0.005)

    def __enter__(self) -> SpoolMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


def chunked_post(
    port: int, path: str, total: int, headers: dict[str, str] | None = None
) -> tuple[int, bytes, int]:
    """POST a multipart body of ``total`` bytes in 64 KiB chunks (Transfer-Encoding:
    chunked), stopping when the server answers; return (status, body, bytes sent)."""
    boundary = "astridboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.fits"\r\nContent-Type: application/fits\r\n\r\n'
    ).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Transfer-Encoding: chunked"]
    lines.append(f"Content-Type: multipart/form-data; boundary={boundary}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunk = bytes(64 * 1024)
        pieces = [head] + [chunk] * (total // len(chunk))
        for piece in pieces:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server has answered (or closed): stop sending
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        else:
            sock.sendall(b"0\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response or not _complete(response):
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            response += part
    finally:
        sock.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.partition(b"\r\n\r\n")[2], sent


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@contextmanager
def served(api: Api) -> Iterator[LiveServer]:
    with LiveServer(api.app) as server:
        yield server


def test_anonymous_chunked_upload_is_refused_before_anything_is_spooled(make_api) -> None:
    api = make_api(max_upload_bytes=200 * MiB)
    with served(api) as server, SpoolMeter() as meter:
        status, body, sent = chunked_post(server.port, UPLOAD, 100 * MiB)
    assert status == 401 and b"credentials" in body
    assert meter.peak == 0  # nothing of the body reached the disk
    assert sent < 100 * MiB  # answered while the client was still sending
    print(f"anonymous 100 MB chunked upload: 401, spooled {meter.peak} B, client sent {sent} B")


def test_authenticated_chunked_upload_stops_at_the_limit(make_api) -> None:
    api = make_api(max_upload_bytes=4 * MiB)
    with served(api) as server, SpoolMeter() as meter:
        status, body, sent = chunked_post(server.port, UPLOAD, 100 * MiB, api.as_role("curator"))
    assert status == 413 and b"larger than" in body and b"problem" not in body[:0]
    assert meter.peak <= 4 * MiB + 64 * 1024 + 64 * 1024
    assert sent < 100 * MiB
    print(f"curator 100 MB chunked upload, limit 4 MiB: 413, spooled {meter.peak} B")


def test_viewer_upload_is_refused_before_the_body(make_api) -> None:
    api = make_api()
    with served(api) as server, SpoolMeter() as meter:
        status, _, sent = chunked_post(server.port, UPLOAD, 50 * MiB, api.as_role("viewer"))
    assert status == 403 and meter.peak == 0 and sent < 50 * MiB


def test_every_other_route_has_a_small_body_limit(make_api) -> None:
    api = make_api(max_body_bytes=256 * 1024)
    with served(api) as server, SpoolMeter() as meter:
        status, body, sent = chunked_post(server.port, "/api/v1/auth/token", 50 * MiB)
    assert status == 413 and b"262144 bytes" in body
    assert meter.peak <= 256 * 1024 + 64 * 1024 and sent < 50 * MiB
    # Declared lengths are refused at once, and small bodies still work.
    r = api.client.post(
        "/api/v1/auth/token", content=b"x" * (300 * 1024), headers={"content-length": "307200"}
    )
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    ok = api.client.post("/api/v1/auth/token", data={"username": "nobody", "password": "x" * 9})
    assert ok.status_code == 401
