"""Live capture through scapy's PF_PACKET listen socket, read raw (no dissection)."""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterator

from scapy.arch.linux import L2ListenSocket
from scapy.config import conf

SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6


class LiveCapture:
    """Frames from an interface, with an optional BPF filter, in promiscuous mode if asked."""

    def __init__(
        self,
        iface: str,
        bpf: str | None = None,
        promisc: bool = False,
        buffer_bytes: int = 64 * 2**20,
    ) -> None:
        self.sock = L2ListenSocket(iface=iface, filter=bpf, promisc=promisc)
        try:
            self.sock.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, buffer_bytes)
        except OSError:
            self.sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        self.linktype = conf.l2types.layer2num.get(self.sock.LL, 1)
        self.kernel_dropped = 0

    def frames(self, running) -> Iterator[tuple[bytes, int, float]]:
        """Yield (frame, link type, timestamp) while running() is true."""
        fd = self.sock.ins
        while running():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            _, data, ts = self.sock.recv_raw(262144)
            if data is not None:
                yield data, self.linktype, float(ts)

    def update_drops(self) -> int:
        """Kernel drops so far (PACKET_STATISTICS resets on read, so this accumulates)."""
        try:
            _, drops = struct.unpack(
                "II", self.sock.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            )
        except OSError:
            return self.kernel_dropped
        self.kernel_dropped += drops
        return self.kernel_dropped

    def close(self) -> None:
        self.update_drops()
        self.sock.close()
