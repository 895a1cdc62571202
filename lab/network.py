"""The lab's hosts: network namespaces on one bridge, on addresses the lab creates.

Topology: a switch namespace holding bridge `br0`, and one namespace per host joined to it by a
veth pair (`eth0` inside the host). The namespaces have no link to the machine's own network
(unless `uplink` puts this machine on the switch, as the deployment test does), so every packet
stays between lab hosts. The capture runs on the bridge and sees every frame.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

SUBNET4, SUBNET6 = "10.203.0", "fd00:203::"


@dataclass(frozen=True)
class Host:
    """One lab host: its role, namespace and addresses (IPv6 empty when the host has none)."""

    name: str
    role: str  # "server", "client" or "attacker"
    ip: str
    ip6: str = ""

    def ns(self, tag: str) -> str:
        return f"dl{tag}-{self.name}"


#: The lab's hosts. The attacker has no IPv6, so its neighbour discovery never mixes with attacks.
HOSTS: tuple[Host, ...] = (
    Host("srv", "server", f"{SUBNET4}.10", f"{SUBNET6}10"),
    Host("web2", "server", f"{SUBNET4}.11", f"{SUBNET6}11"),
    Host("c1", "client", f"{SUBNET4}.21", f"{SUBNET6}21"),
    Host("c2", "client", f"{SUBNET4}.22", f"{SUBNET6}22"),
    Host("c3", "client", f"{SUBNET4}.23", f"{SUBNET6}23"),
    Host("att", "attacker", f"{SUBNET4}.66"),
)
BY_NAME = {host.name: host for host in HOSTS}
SERVER, ATTACKER = BY_NAME["srv"], BY_NAME["att"]
CLIENTS = tuple(h for h in HOSTS if h.role == "client")
#: Every address of a host that is not the attacker: traffic only between these is normal.
BENIGN_ADDRESSES = frozenset(a for h in HOSTS if h.role != "attacker" for a in (h.ip, h.ip6) if a)


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command, failing with its stderr when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


@dataclass
class Lab:
    """The namespaces of these hosts, created by up() and removed by down() (also as a context
    manager); `uplink` also gives this machine an address on the switch."""

    tag: str = field(default_factory=lambda: str(os.getpid() % 100000))
    hosts: tuple[Host, ...] = HOSTS
    uplink: str = ""
    etc_dirs: list[Path] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"dl{self.tag}-sw"

    def ns(self, host: Host | str) -> str:
        return (self.host(host) if isinstance(host, str) else host).ns(self.tag)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r} in this lab")

    def up(self) -> Lab:
        """Create the switch and the hosts; on failure, remove what was made."""
        if os.geteuid() != 0:
            raise PermissionError("the lab needs root (network namespaces): run it with sudo")
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        run("ip", "netns", "add", self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for index, host in enumerate(self.hosts):
            ns, peer = self.ns(host), f"p{index}"
            run("ip", "netns", "add", ns)
            run(
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                self.switch,
            )
            run("ip", "-n", self.switch, "link", "set", peer, "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            if host.ip6:
                run("ip", "-n", ns, "addr", "add", f"{host.ip6}/64", "dev", "eth0", "nodad")
            else:
                self.sysctl(host, "net.ipv6.conf.all.disable_ipv6", "1")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            # Unreachables at full rate, so UDP scans finish in seconds as on a fast LAN stack.
            self.sysctl(host, "net.ipv4.icmp_ratelimit", "0")
        if self.uplink:  # this machine's own end: dl<tag>-up, on the switch
            up = f"dl{self.tag}-up"
            run(*f"ip link add {up} type veth peer name uplink netns {self.switch}".split())
            run("ip", "-n", self.switch, "link", "set", "uplink", "master", "br0", "up")
            run("sysctl", "-q", "-w", f"net.ipv6.conf.{up}.disable_ipv6=1")
            run("ip", "addr", "add", f"{self.uplink}/24", "dev", up)
            run("ip", "link", "set", up, "up")

    def sysctl(self, host: Host, key: str, value: str) -> None:
        run("ip", "netns", "exec", self.ns(host), "sysctl", "-q", "-w", f"{key}={value}")

    def etc(self, host: Host) -> Path:
        """/etc/netns/<ns>/: files here replace /etc's inside the host (`ip netns exec` binds them)."""
        path = Path("/etc/netns") / self.ns(host)
        path.mkdir(parents=True, exist_ok=True)
        self.etc_dirs.append(path)
        return path

    def cmd(self, host: Host, *args: str) -> list[str]:
        """argv running args inside host."""
        return ["ip", "netns", "exec", self.ns(host), *args]

    def down(self) -> None:
        if self.uplink:
            subprocess.run(
                ["ip", "link", "del", f"dl{self.tag}-up"], capture_output=True, check=False
            )
        for host in self.hosts:
            _kill_ns(self.ns(host))
            subprocess.run(["ip", "netns", "del", self.ns(host)], capture_output=True, check=False)
        _kill_ns(self.switch)
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True, check=False)
        for path in self.etc_dirs:
            subprocess.run(["rm", "-rf", str(path)], capture_output=True, check=False)

    def __enter__(self) -> Self:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


def _kill_ns(ns: str) -> None:
    pids = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass
