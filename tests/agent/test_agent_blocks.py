"""The agent's per-block flow: capture.pcap written a block at a time, the live queue's drops."""

from __future__ import annotations

from pathlib import Path

from scapy.utils import RawPcapReader

from capture_agent.agent import Agent, RunConfig
from capture_agent.blocks import Block
from capture_agent.extractor import Extractor
from capture_agent.logs import PCAP_RECORD, PcapLog
from capture_agent.pcap import blocks
from tests.agent.classify_server import ClassifyServer
from tests.conftest import PCAPS

T0 = 1_700_000_000.0
SYNFLOOD = PCAPS / "synflood_spoofed.pcap"


def records_in(path: Path) -> list[tuple[bytes, float]]:
    with RawPcapReader(str(path)) as reader:
        return [(data, meta.sec + meta.usec * 1e-6) for data, meta in reader]


def frames(count: int, linktype: int = 1) -> list[tuple[bytes, int, float]]:
    return [(bytes([index % 256]) * 60, linktype, T0 + index * 0.25) for index in range(count)]


def test_a_block_goes_to_the_files_of_its_link_types(tmp_path):
    ether, raw = frames(3), frames(2, linktype=101)
    late = (b"\x45" * 40, 1, 2.0**32 + 1)  # past what pcap can hold
    log = PcapLog(tmp_path / "capture.pcap", 1)
    log.write_block(Block.of([ether[0], raw[0], late, ether[1], raw[1], ether[2]]))
    log.close()
    assert records_in(tmp_path / "capture.pcap") == [(f, ts) for f, _, ts in ether]
    assert records_in(tmp_path / "capture-linktype101.pcap") == [(f, ts) for f, _, ts in raw]
    assert (log.written_all, log.lost_all) == (5, 1)


def test_files_rotate_between_records_of_one_block(tmp_path):
    record = PCAP_RECORD.size + 60
    log = PcapLog(tmp_path / "capture.pcap", 1, max_bytes=4 * record)
    log.write_block(Block.of(frames(10)))
    log.close()
    names = ["capture.pcap.2", "capture.pcap.1", "capture.pcap"]
    assert [len(records_in(tmp_path / name)) for name in names] == [4, 4, 2]
    written = [record for name in names for record in records_in(tmp_path / name)]
    assert written == [(f, ts) for f, _, ts in frames(10)]


def agent(tmp_path: Path, live: bool, queue_size: int = 200_000) -> Agent:
    config = RunConfig(tmp_path / "logs", "test", "http://127.0.0.1:9", None, queue_size=queue_size)
    return Agent(config, Extractor(), live=live)


def test_live_blocks_past_the_queue_limit_are_dropped_and_counted(tmp_path):
    """Nothing takes blocks off the queue here: 3 blocks of 400 frames fit in 1000, 2 do not."""
    live = agent(tmp_path, live=True, queue_size=1000)
    live._read(iter([Block.of(frames(400)), Block.of(frames(400)), Block.of(frames(400))]))
    assert live.blocks.qsize() == 2 and live.queue_dropped == 400
    assert live.pcap_log is not None
    live.pcap_log.close()
    assert live.pcap_log.written == 1200  # all logged all the same


def test_live_rows_wait_on_disk_for_a_sender_behind_and_what_does_not_fit_is_counted(tmp_path):
    """No sender reads the outbox (2 messages): live, the main loop never waits on it; the rows
    go to the disk backlog, and past its limit they are refused and counted."""
    config = RunConfig(tmp_path / "logs", "test", "http://127.0.0.1:9", None, pending_messages=2)
    live = Agent(config, Extractor(), live=True)
    rows = [(i, "x" * 20) for i in range(256)]
    for _ in range(6):
        live._emit(list(rows))
    assert live.outbox.qsize() == 2  # two messages of 256 rows taken, then the outbox is full
    assert len(live.backlog) == 4 * 256 and live.rows_shed == 0 and not live.pending
    live.backlog.max_bytes = live.backlog.bytes + 100  # room for no more list of 256 rows
    live._emit(list(rows))
    assert len(live.backlog) == 4 * 256 and live.rows_shed == 256
    live.backlog.close()
    live.outbox.cancel_join_thread()


def test_a_flood_outrunning_the_server_is_classified_from_the_backlog_in_order(tmp_path):
    """Live, with a server slower than the capture: every connection of a flood is classified
    (the rows that waited on disk included, in the order they came), none lost."""
    source = list(blocks(SYNFLOOD, 512))
    expected = Extractor()
    emitted = [row for block in source for row in expected.feed_block(block)]
    with ClassifyServer(delay=0.01) as server:
        config = RunConfig(
            tmp_path / "logs", "test", server.url, None, pending_messages=4, drain_timeout=5
        )
        live = Agent(config, Extractor(), live=True)
        counters = live.run(iter(source))
    assert counters["flows_backlogged"] > len(emitted) // 2
    assert counters["flows_lost"] == counters["flows_not_backlogged"] == 0
    assert counters["flows_classified"] == counters["connections_emitted"] >= len(emitted)
    received = [(f["src_ip"], f["src_port"], f["start_time"]) for f in server.received]
    assert received[: len(emitted)] == [(r[-6], r[-5], r[-2]) for r in emitted]
