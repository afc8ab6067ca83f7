"""Test hosts in network namespaces: several "machines" on one box, with links to cut.

Each host is a namespace with one veth into a switch namespace holding two bridges; the root
namespace joins the switch too (address .254) so tests can reach every node. Cutting a host's
link isolates it from everyone; moving hosts to the second bridge splits the network in two.
Addresses are 10.77.N.0/24 with N from the process id, so concurrent runs do not collide; all
traffic stays on these namespaces' own veths. Needs root and iproute2 (`ip netns`).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field


class NetnsUnavailable(RuntimeError):
    pass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@dataclass
class HostNetwork:
    count: int
    tag: str = field(default_factory=lambda: f"a{os.getpid() % 10000}")
    subnet: str = field(default_factory=lambda: f"10.77.{os.getpid() % 250}")
    created: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.tag}sw"

    def host_ns(self, i: int) -> str:
        return f"{self.tag}n{i}"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i}"

    @property
    def client_address(self) -> str:
        return f"{self.subnet}.254"

    def hosts(self) -> dict[int, tuple[str, str]]:
        return {i: (self.address(i), self.host_ns(i)) for i in range(1, self.count + 1)}

    def create(self) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        try:
            _ip("netns", "add", self.switch)
            self.created.append(self.switch)
            for br in ("br0", "br1"):
                _ip("-n", self.switch, "link", "add", br, "type", "bridge")
                _ip("-n", self.switch, "link", "set", br, "up")
            for i in range(1, self.count + 1):
                ns, hostend, swend = self.host_ns(i), f"{self.tag}h{i}", f"{self.tag}s{i}"
                _ip("netns", "add", ns)
                self.created.append(ns)
                _ip("link", "add", hostend, "type", "veth", "peer", "name", swend)
                _ip("link", "set", hostend, "netns", ns)
                _ip("link", "set", swend, "netns", self.switch)
                _ip("-n", self.switch, "link", "set", swend, "master", "br0", "up")
                _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", hostend)
                _ip("-n", ns, "link", "set", hostend, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", f"{self.tag}hc", "type", "veth", "peer", "name", f"{self.tag}sc")
            _ip("link", "set", f"{self.tag}sc", "netns", self.switch)
            _ip("-n", self.switch, "link", "set", f"{self.tag}sc", "master", "br0", "up")
            _ip("addr", "add", f"{self.client_address}/24", "dev", f"{self.tag}hc")
            _ip("link", "set", f"{self.tag}hc", "up")
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            self.destroy()
            detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
            raise NetnsUnavailable(f"cannot make network namespaces here: {detail}") from None

    def isolate(self, i: int) -> None:
        """Cut host i's only link: it reaches no one and no one reaches it."""
        _ip("-n", self.switch, "link", "set", f"{self.tag}s{i}", "down")

    def heal(self, i: int) -> None:
        _ip("-n", self.switch, "link", "set", f"{self.tag}s{i}", "up")

    def split(self, group: list[int]) -> None:
        """Move these hosts to the second bridge: two halves that cannot reach each other (the
        test client stays with the first half)."""
        for i in group:
            _ip("-n", self.switch, "link", "set", f"{self.tag}s{i}", "master", "br1")

    def heal_all(self) -> None:
        for i in range(1, self.count + 1):
            _ip("-n", self.switch, "link", "set", f"{self.tag}s{i}", "master", "br0")
            self.heal(i)

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", f"{self.tag}hc"], capture_output=True, timeout=10)
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.created.clear()
