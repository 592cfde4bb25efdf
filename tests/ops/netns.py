"""Test hosts in Linux network namespaces: a bridge in the root namespace, one veth per host.

``NetLab(["api", "w1", "w2"])`` builds, on a private /24 of 10.0.0.0/8 that no interface of
this machine uses, a bridge ``abr<id>`` holding ``.1`` and one namespace ``astrid-<name>-<id>``
per host with ``.2``, ``.3``, ... on a veth into the bridge. Hosts reach the services the
root namespace offers on the bridge address; :meth:`NetLab.cut` and :meth:`NetLab.restore`
take a host's link down and up. :meth:`NetLab.close` removes everything (namespaces, veths,
bridge) and is safe to call twice. Needs root and iproute2.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid

__all__ = ["NetLab", "NetLabError"]


class NetLabError(RuntimeError):
    """The namespaces could not be built (no root, no iproute2, no bridge support)."""


def _ip(*args: str) -> None:
    run = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        raise NetLabError(f"ip {' '.join(args)}: {run.stderr.strip() or run.returncode}")


class NetLab:
    """A bridge and one network namespace per host name (see the module docstring)."""

    def __init__(self, hosts: list[str]) -> None:
        self.id = uuid.uuid4().hex[:6]
        self.bridge = f"abr{self.id}"
        self.subnet = _free_subnet(int(self.id, 16))
        self.gateway = f"{self.subnet}.1"
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self.veths: dict[str, str] = {}
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, host in enumerate(hosts):
                self._add_host(host, i)
        except (NetLabError, OSError, subprocess.SubprocessError) as exc:
            self.close()
            raise NetLabError(str(exc)) from exc

    def _add_host(self, host: str, index: int) -> None:
        ns, outside, inside = (
            f"astrid-{host}-{self.id}",
            f"av{self.id}{index}",
            f"ap{self.id}{index}",
        )
        address = f"{self.subnet}.{index + 2}"
        _ip("netns", "add", ns)
        self.namespaces[host] = ns
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        self.veths[host] = outside
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self.addresses[host] = address

    def exec_prefix(self, host: str) -> list[str]:
        """The command prefix that runs a program on ``host``."""
        return ["ip", "netns", "exec", self.namespaces[host]]

    def cut(self, host: str) -> None:
        """Take ``host``'s link down (its packets go nowhere; no reset reaches anyone)."""
        _ip("link", "set", self.veths[host], "down")

    def restore(self, host: str) -> None:
        """Bring ``host``'s link up again."""
        _ip("link", "set", self.veths[host], "up")

    def close(self) -> None:
        """Remove the namespaces (their veth ends go with them), the veths and the bridge."""
        for ns in self.namespaces.values():
            with contextlib.suppress(NetLabError, OSError, subprocess.SubprocessError):
                _ip("netns", "del", ns)
        for veth in self.veths.values():
            with contextlib.suppress(NetLabError, OSError, subprocess.SubprocessError):
                _ip("link", "del", veth)  # normally already gone with its peer
        with contextlib.suppress(NetLabError, OSError, subprocess.SubprocessError):
            _ip("link", "del", self.bridge)
        self.namespaces, self.veths = {}, {}


def _free_subnet(seed: int) -> str:
    """A 10.x.y prefix (x in 200-249) that no address of this machine is in."""
    used = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=30
    ).stdout
    for k in range(256):
        n = (seed + k * 7919) % (50 * 254)
        prefix = f"10.{200 + n // 254}.{1 + n % 254}"
        if f" {prefix}." not in used:
            return prefix
    raise NetLabError("no free 10.x.y.0/24 subnet")
