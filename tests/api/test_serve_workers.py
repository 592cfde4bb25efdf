"""``astrid serve --workers N``: several uvicorn processes on one TCP listener whose accepted
connections get ``TCP_NODELAY`` (uvicorn's own ``--workers`` listener did not, which made
every answer wait for the client's delayed ACK: a flat ~45 ms per request)."""

from __future__ import annotations

import asyncio
import pickle
import socket
import subprocess
import sys
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import httpx
import pytest

from astrid.cli.api import WorkerSockets, listening_socket, worker_sockets
from astrid.store.db import upgrade
from tests.api.conftest import free_port, serve_env, wait_ready


async def _nodelay_of_accepted(listener: socket.socket) -> int:
    """TCP_NODELAY of the server side of one connection accepted by asyncio on ``listener``."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    listener.listen()
    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    port = listener.getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        return value
    finally:
        server.close()


def test_listener_gives_accepted_connections_tcp_nodelay() -> None:
    """Ours: NODELAY on; a listener made as uvicorn's ``bind_socket`` makes it: off."""
    assert asyncio.run(_nodelay_of_accepted(listening_socket("127.0.0.1", 0))) != 0
    plain = socket.socket(family=socket.AF_INET)  # uvicorn.Config.bind_socket's listener
    plain.bind(("127.0.0.1", 0))
    assert asyncio.run(_nodelay_of_accepted(plain)) == 0


def test_listening_socket_refuses_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        try:
            listening_socket("127.0.0.1", busy.getsockname()[1])
        except OSError:
            pass
        else:  # pragma: no cover - the assertion is the point
            raise AssertionError("a port in use was bound twice")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing")
def test_each_worker_serves_its_own_socket_of_the_port() -> None:
    """Two workers get one SO_REUSEPORT socket each, on one port (the kernel balances new
    connections between them; one shared socket let one worker accept 37 of 50); a worker
    that exits frees its socket for its replacement; the parent sees every socket."""
    socks = worker_sockets("127.0.0.1", 0, 2)
    try:
        assert len(socks.all) == 2
        assert len({s.getsockname()[1] for s in socks.all}) == 1
        for s in socks.all:
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert s.proto == socket.IPPROTO_TCP
        assert list(socks) == socks.all  # the parent (never unpickled) claims nothing

        def worker_copy() -> WorkerSockets:  # what uvicorn's spawned worker receives
            return pickle.loads(ForkingPickler.dumps(socks))

        first, second = worker_copy(), worker_copy()
        assert len(first) == 1 and first[0] is first.all[0]
        assert len(second) == 1 and second[0] is second.all[1]
        first._lock.close()  # that worker exited: its socket is free again
        third = worker_copy()
        assert list(third) == [third.all[0]]
        assert len(worker_copy()) == 2  # none free (a worker too many): serves them all
        for copy in (second, third):
            copy._lock.close()
    finally:
        socks.close()


def test_worker_sockets_refuse_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError):
            worker_sockets("127.0.0.1", busy.getsockname()[1], 2)


def test_astrid_serve_with_two_workers_answers(tmp_path: Path) -> None:
    """A real ``astrid serve --workers 2``: both processes serve the API on one port."""
    env = serve_env(tmp_path)
    upgrade(f"sqlite:///{tmp_path / 'astrid.db'}")
    port = free_port()
    cmd = [sys.executable, "-m", "astrid", "serve", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--no-notify", "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ready = wait_ready(proc, port, patience_s=180, poll_s=0.3)  # two cold interpreters
        assert ready.status_code == 200
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            codes = {client.get("/api/v1/observations").status_code for _ in range(10)}
        assert codes == {401}  # the API's own answer, from whichever worker took it
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_worker_freezes_its_start_up_objects(tmp_path: Path) -> None:
    """A served process moves its start-up objects out of the collector's scans, so no full
    collection walks the ~500,000 of them while requests wait."""
    env = serve_env(tmp_path)
    env["ASTRID_DATABASE_URL"] = f"sqlite:///{tmp_path / 'astrid.db'}"
    upgrade(env["ASTRID_DATABASE_URL"])
    code = (
        "import gc; from astrid.cli.api import worker_app; "
        "n = gc.get_freeze_count(); worker_app(); print(n, gc.get_freeze_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    before, after = map(int, out.stdout.split()[-2:])
    assert before == 0 and after > 100_000
