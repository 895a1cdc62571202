"""Live capture from an AF_PACKET socket's TPACKET_V3 ring, read in blocks (no dissection).

The kernel fills blocks of the mmap'ed ring and hands each to user space when it is full or
`retire_ms` after its first frame; each block is copied into one `Block` and given back at once.
Scapy compiles the BPF filter (with libpcap); the link type comes from the socket's hardware type.
A frame's time is the kernel's stamp, `tp_sec + tp_nsec * 1e-9` seconds since the epoch.
"""

from __future__ import annotations

import mmap
import select
import socket
import struct
import time
from array import array
from collections.abc import Callable, Iterator

from capture_agent.blocks import Block

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ETH_P_8021Q = 0x8100
DLT_EN10MB, DLT_RAW, DLT_RADIOTAP = 1, 101, 127
ARPHRD_LOOPBACK = 772
#: Hardware type (ARPHRD_*) → link type (DLT_*). Types without a link header are raw IP.
DLT_OF_ARPHRD = {
    1: DLT_EN10MB,  # ARPHRD_ETHER (and veth, bridges, bonds...)
    ARPHRD_LOOPBACK: DLT_EN10MB,  # Linux loopback frames carry an Ethernet header
    512: DLT_RAW,  # ARPHRD_PPP
    519: DLT_RAW,  # ARPHRD_RAWIP
    768: DLT_RAW,  # ARPHRD_TUNNEL (ipip)
    769: DLT_RAW,  # ARPHRD_TUNNEL6 (ip6tnl)
    776: DLT_RAW,  # ARPHRD_SIT
    778: DLT_RAW,  # ARPHRD_IPGRE
    803: DLT_RADIOTAP,  # ARPHRD_IEEE80211_RADIOTAP
    823: DLT_RAW,  # ARPHRD_IP6GRE
    0xFFFE: DLT_RAW,  # ARPHRD_NONE (tun)
}
BLOCK_HEADER = struct.Struct("<III")  # block_status, num_pkts, offset_to_first_pkt (at 8)
#: tpacket3_hdr: next offset, sec, nsec, snaplen, len, status, mac, net, rxhash, vlan tci, tpid
FRAME_HEADER = struct.Struct("<IIIIIIHHIIH")
REQ3 = struct.Struct("<7I")  # tpacket_req3
STATS3 = struct.Struct("<III")  # tpacket_stats_v3: packets, drops, freeze_q_cnt


class LiveCapture:
    """Blocks of frames from an interface, with an optional BPF filter, in promiscuous mode if
    asked. Refuses an interface whose hardware type has no known link type."""

    def __init__(
        self,
        iface: str,
        bpf: str | None = None,
        promisc: bool = False,
        block_bytes: int = 2 * 2**20,
        block_count: int = 32,
        retire_ms: int = 50,
    ) -> None:
        self.kernel_dropped = 0
        self.block_bytes, self.block_count = block_bytes, block_count
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.retire_ms = retire_ms
            self.linktype = self._open(iface, bpf, promisc, retire_ms)
        except BaseException:
            self.sock.close()
            raise

    def _open(self, iface: str, bpf: str | None, promisc: bool, retire_ms: int) -> int:
        """Bind (receiving nothing yet), filter, map the ring, then start receiving."""
        sock = self.sock
        sock.bind((iface, 0))
        hatype = sock.getsockname()[3]
        linktype = DLT_OF_ARPHRD.get(hatype)
        if linktype is None:
            raise OSError(f"{iface} has hardware type {hatype} (ARPHRD), of no known link type")
        if bpf is not None:
            attach_filter(sock, bpf, linktype)
        if promisc:
            mreq = struct.pack("iHH8s", socket.if_nametoindex(iface), PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        if hatype == ARPHRD_LOOPBACK:  # each frame would be seen twice, going out and coming in
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frame_bytes = 2048  # frames are packed in V3: this only sizes the request
        frames = self.block_bytes // frame_bytes * self.block_count
        request = REQ3.pack(
            self.block_bytes, self.block_count, frame_bytes, frames, retire_ms, 0, 0
        )
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
        self.ring = mmap.mmap(sock.fileno(), self.block_bytes * self.block_count)
        self.view = memoryview(self.ring)
        sock.bind((iface, ETH_P_ALL))
        return linktype

    def blocks(self, running: Callable[[], bool]) -> Iterator[Block]:
        """Yield a Block per filled ring block while running() is true."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | select.POLLERR)
        index = 0
        while running():
            base = index * self.block_bytes
            if not BLOCK_HEADER.unpack_from(self.ring, base + 8)[0] & TP_STATUS_USER:
                poller.poll(200)
                continue
            block = self._take(base)
            index = (index + 1) % self.block_count
            if len(block):
                yield block
        yield from self._drain(index)

    def _drain(self, index: int) -> Iterator[Block]:
        """At stop, the frames already captured: the block being filled is handed over when its
        retire timeout passes, so wait that long, then take every block the kernel has handed over
        (the last packets before a stop would be lost otherwise)."""
        time.sleep(2 * self.retire_ms / 1000)
        for _ in range(self.block_count):
            base = index * self.block_bytes
            if not BLOCK_HEADER.unpack_from(self.ring, base + 8)[0] & TP_STATUS_USER:
                return
            block = self._take(base)
            index = (index + 1) % self.block_count
            if len(block):
                yield block

    def _take(self, base: int) -> Block:
        """Copy the frames of the ring block at base into a Block and give the block back."""
        _, count, offset = BLOCK_HEADER.unpack_from(self.ring, base + 8)
        raw = self.linktype == DLT_RAW
        parts, offsets, lengths, stamps = [], array("Q"), array("I"), array("d")
        offset += base
        position = 0
        for _ in range(count):
            next_offset, sec, nsec, snap, _, status, mac, net, _, tci, tpid = (
                FRAME_HEADER.unpack_from(self.ring, offset)
            )
            frame = self.view[offset + (net if raw else mac) : offset + mac + snap]
            if status & TP_STATUS_VLAN_VALID and not raw:
                parts += _tagged(frame, status, tci, tpid)
                size = len(frame) + 4
            else:
                parts.append(frame)
                size = len(frame)
            offsets.append(position)
            lengths.append(size)
            stamps.append(sec + nsec * 1e-9)
            position += size
            offset += next_offset
        data = b"".join(parts)
        parts.clear()  # no view of the ring outlives the copy
        struct.pack_into("<I", self.ring, base + 8, TP_STATUS_KERNEL)
        return Block(data, offsets, lengths, array("H", [self.linktype]) * count, stamps)

    def update_drops(self) -> int:
        """Kernel drops so far (PACKET_STATISTICS resets on read, so this accumulates)."""
        try:
            stats = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, STATS3.size)
        except OSError:
            return self.kernel_dropped
        self.kernel_dropped += STATS3.unpack(stats)[1]
        return self.kernel_dropped

    def close(self) -> None:
        self.update_drops()
        self.view.release()
        self.ring.close()
        self.sock.close()


def _tagged(frame: memoryview, status: int, tci: int, tpid: int) -> tuple:
    """An Ethernet frame's parts with the VLAN tag the kernel took out put back."""
    tag_type = tpid if status & TP_STATUS_VLAN_TPID_VALID else ETH_P_8021Q
    return frame[:12], struct.pack("!HH", tag_type, tci), frame[12:]


def attach_filter(sock: socket.socket, bpf: str, linktype: int) -> None:
    """Compile bpf for linktype with scapy (libpcap) and attach it to sock."""
    from scapy.arch.common import compile_filter, free_filter
    from scapy.libs.structures import sock_fprog

    program = compile_filter(bpf, linktype=linktype)
    try:
        sock.setsockopt(
            socket.SOL_SOCKET, SO_ATTACH_FILTER, sock_fprog(program.bf_len, program.bf_insns)
        )
    finally:
        free_filter(program)
