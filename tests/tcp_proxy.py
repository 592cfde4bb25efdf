"""A loopback TCP proxy the tests control: put it in front of PostgreSQL and cut it.

``cut()`` closes the listening socket and every relayed connection, so new connections are
refused (ECONNREFUSED, as from a stopped server) and open ones are reset mid-statement;
``restore()`` listens again on the same port. Real sockets, no mocks.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

__all__ = ["TcpProxy"]


class TcpProxy:
    """Relay ``host:<port>`` (default loopback) to ``target`` (host, port) until cut."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.connections = 0  # relayed so far (a test can see that a client reconnected)
        # local ports of the relayed upstream sockets: the server sees them as client ports
        # (a test can end exactly its own backends, not a parallel test's)
        self.upstream_ports: list[int] = []
        probe = socket.socket()
        probe.bind((host, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.restore()

    @classmethod
    def for_url(
        cls, url: str, host: str = "127.0.0.1", default_port: int = 5432
    ) -> tuple[TcpProxy, str]:
        """A proxy on ``host`` in front of the server of ``url`` and the URL through it."""
        parts = urlsplit(url)
        proxy = cls((parts.hostname or "127.0.0.1", parts.port or default_port), host)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        netloc = f"{auth}{host}:{proxy.port}"
        return proxy, urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def restore(self) -> None:
        """Accept connections again (on the same port)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
                self.connections += 1
                self.upstream_ports.append(upstream.getsockname()[1])
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
