"""Adversarial benchmark: crafted captures against ordinary traffic of the same size, and the
memory held by a flood of content-inspected connections.

    uv run python benchmarks/adversarial.py            # figures for docs/benchmarks.md

Speed: frames through the agent's Extractor in this process (best of 3), crafted time against
the time of ordinary HTTP traffic with the same packets and bytes, measured in the same run.
Memory: peak RSS of `desy-agent extract` (both processes) on 3,000 HTTP connections open at once,
32 KiB each way.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks import crafted
from capture_agent.extractor import Extractor

TARGET_RATIO = 0.5
MEMORY_CEILING_MB = 256


def seconds(frames: list[crafted.Frame], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        extractor = Extractor()
        start = time.perf_counter()
        for t, frame in frames:
            extractor.feed(frame, 1, t)
        extractor.finish()
        best = min(best, time.perf_counter() - start)
    return best


def flood_rss_mb(directory: Path) -> float:
    """Peak resident memory of `desy-agent extract` on the HTTP flood, its two processes summed
    (sampled every 20 ms; the pcap is written by a child so this process stays small)."""
    pcap = directory / "http_flood.pcap"
    write = (
        "import sys; from pathlib import Path; from benchmarks import crafted; "
        "crafted.write_pcap(Path(sys.argv[1]), crafted.http_flood())"
    )
    subprocess.run([sys.executable, "-c", write, str(pcap)], check=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "capture_agent.cli",
            "extract",
            "-q",
            str(pcap),
            "-o",
            str(directory / "flood.csv"),
        ]
    )
    agent, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(
                peak, sum(p.memory_info().rss for p in (agent, *agent.children(recursive=True)))
            )
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.02)
    if proc.returncode:
        raise RuntimeError(f"desy-agent extract failed ({proc.returncode})")
    return peak / 2**20


def main() -> int:
    failed = False
    print(f"{'capture':<14}{'packets':>9}{'MB':>7}{'crafted s':>11}{'ordinary s':>12}{'ratio':>7}")
    for name, frames in crafted.captures():
        packets, size = crafted.size(frames)
        ratio_base = seconds(crafted.ordinary(packets, size))
        took = seconds(frames)
        ratio = ratio_base / took
        failed |= ratio < TARGET_RATIO
        print(
            f"{name:<14}{packets:>9}{size / 1e6:>7.1f}{took:>11.3f}{ratio_base:>12.3f}{ratio:>7.2f}"
        )
    with tempfile.TemporaryDirectory() as directory:
        rss = flood_rss_mb(Path(directory))
    failed |= rss > MEMORY_CEILING_MB
    print(
        f"http_flood: 3,000 connections open, 32 KiB each way: peak RSS {rss:.0f} MiB (ceiling {MEMORY_CEILING_MB})"
    )
    print(
        "FAIL"
        if failed
        else f"ok: every crafted capture at >= {TARGET_RATIO:.0%} of ordinary speed"
    )
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
