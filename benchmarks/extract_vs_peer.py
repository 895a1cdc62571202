"""`desy-agent extract` against the C++ kdd99_feature_extractor (AI-IDS, one thread, libpcap),
timed in the same run, interleaved, best of RUNS (issue 23).

    export PATH=/root/.pyenv/versions/3.11.7/bin:$PATH
    uv run python -m benchmarks.extract_vs_peer           # as root: installs libpcap-dev if missing
    SMALL=1 RUNS=1 uv run python -m benchmarks.extract_vs_peer   # tiny captures: checks the script

Builds the peer with cmake (Release) in WORK (default /tmp/desy-bench) from PEER_REPO at
PEER_COMMIT; writes the captures there: flow-heavy (`make_flood_pcap.py`: ten rewritten copies of
../shared/pcaps/synflood_spoofed.pcap, 378,410 packets), few long flows (100,000 packets in 200
TCP flows) and payload-heavy (HTTP downloads, built with struct as `crafted.py` builds frames).
Prints, per capture and command (`desy-agent extract`, the peer writing its extra columns
with `-e`; all output to /dev/null): packets, best seconds, packets/s, the ratio to the peer (its
seconds over ours: above 1 is faster than the peer), peak RSS of the largest process (GNU time) and
of the process tree summed (psutil, sampled every 20 ms in one more run); then start-up on a
1-packet pcap, and the installed size of the agent extra alone (fresh venv, `uv pip install
.[agent]` of HEAD) with a check that it pulls in no ML stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from benchmarks import crafted
from capture_agent.pcap import blocks

ROOT = Path(__file__).resolve().parents[1]
SYNFLOOD = ROOT.parent / "shared" / "pcaps" / "synflood_spoofed.pcap"
PEER_REPO = os.environ.get("PEER_REPO", "https://github.com/AI-IDS/kdd99_feature_extractor.git")
PEER_COMMIT = os.environ.get("PEER_COMMIT", "438dba057aff5a555083d1315230fc3b35c9ebc7")
WORK = Path(os.environ.get("WORK", "/tmp/desy-bench"))
SMALL = os.environ.get("SMALL", "") not in ("", "0")
RUNS = int(os.environ.get("RUNS", "1" if SMALL else "3"))
ML_STACK = ("numpy", "sklearn", "scikit_learn", "onnxruntime", "onnx", "pandas", "scipy")
CLIENT, SERVER = 0x0A010001, 0x0A020002
AGENT = Path(sys.executable).parent / "desy-agent"


def build_peer(work: Path) -> Path:
    """The peer's binary, cloned and built with cmake once (libpcap-dev from apt if missing)."""
    binary = work / "peer-build" / "src" / "kdd99extractor"
    if binary.exists():
        return binary
    if not Path("/usr/include/pcap.h").exists():
        sh("apt-get", "install", "-y", "libpcap-dev")
    source, build = work / "peer-src", binary.parents[1]
    if not source.exists():
        sh("git", "clone", "-q", PEER_REPO, source)
    sh("git", "-C", source, "checkout", "-q", PEER_COMMIT)
    sh("cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release")
    sh("cmake", "--build", build, "--target", "kdd99extractor", "-j", "2")
    return binary


def flow_heavy(path: Path) -> Path:
    """Rewritten copies of the SYN flood (ten; SMALL: two of its first 2,000 packets)."""
    source, copies = SYNFLOOD, 10
    if SMALL:
        source, copies = path.with_suffix(".source.pcap"), 2
        frames = [f for b in blocks(SYNFLOOD) for f in b.frames()][:2000]
        crafted.write_pcap(source, [(ts, frame) for frame, _, ts in frames])
    script = ROOT / "benchmarks" / "make_flood_pcap.py"
    command = [sys.executable, str(script), str(source), str(path), "--copies", str(copies)]
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    return path


def long_flows(flows: int, packets: int) -> Iterator[crafted.Frame]:
    """`flows` TCP connections carried at once, `packets` packets in all: handshakes, then the
    server's 1,024-byte segments each acknowledged by the client, round robin, then FINs."""
    per_flow = packets // flows
    seq = [(1000, 5000)] * flows
    for step in range(per_flow):
        for flow in range(flows):
            t, sport = (step * flows + flow) * 1e-4, 30000 + flow
            client, server = seq[flow]
            if step == 0:
                yield crafted.tcp(t, CLIENT, SERVER, sport, 5001, client - 1, 2)
            elif step == 1:
                yield crafted.tcp(t, SERVER, CLIENT, 5001, sport, server - 1, 18)
            elif step >= per_flow - 2:
                yield (
                    crafted.tcp(t, CLIENT, SERVER, sport, 5001, client, 17)
                    if step == per_flow - 2
                    else crafted.tcp(t, SERVER, CLIENT, 5001, sport, server, 17)
                )
            elif step % 2:
                yield crafted.tcp(t, SERVER, CLIENT, 5001, sport, server, 24, b"D" * 1024)
                seq[flow] = client, server + 1024
            else:
                yield crafted.tcp(t, CLIENT, SERVER, sport, 5001, client, 16)


def http_downloads(downloads: int, size: int) -> Iterator[crafted.Frame]:
    """`downloads` HTTP GETs one after another, each answered by `size` bytes of text in
    1,448-byte segments, the client acknowledging every second one."""
    body = (b"<p>quarterly report, network update</p>\n" * (size // 40 + 1))[:size]
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body
    sent, t = 101 + len(crafted.TEXT), 0.0
    for i in range(downloads):
        sport, server = 20000 + i, SERVER + i % 20
        frames = crafted.session(t, CLIENT, server, sport, 80, [crafted.TEXT], [])[:-2]
        seq, t = 901, frames[-1][0] - crafted.T0
        for n, at in enumerate(range(0, len(response), 1448)):
            t += 2e-5
            segment = response[at : at + 1448]
            frames.append(crafted.tcp(t, server, CLIENT, 80, sport, seq, 24, segment))
            seq += len(segment)
            if n % 2:
                frames.append(crafted.tcp(t + 1e-5, CLIENT, server, sport, 80, sent, 16))
        frames.append(crafted.tcp(t + 2e-5, CLIENT, server, sport, 80, sent, 17))
        frames.append(crafted.tcp(t + 3e-5, server, CLIENT, 80, sport, seq, 17))
        yield from frames
        t += 0.01


def captures(work: Path) -> dict[str, Path]:
    """Write (once) the benchmark's captures; name -> path."""
    flows, downloads = (
        ((20, 2_000), (6, 64 * 1024)) if SMALL else ((200, 100_000), (300, 256 * 1024))
    )
    suffix = "_small.pcap" if SMALL else ".pcap"
    builders = {
        "flow-heavy": flow_heavy,
        "long-flows": lambda path: crafted.write_pcap(path, list(long_flows(*flows))),
        "http-downloads": lambda path: crafted.write_pcap(path, list(http_downloads(*downloads))),
        "one-packet": lambda path: crafted.write_pcap(path, [crafted.tcp(0, 1, 2, 3, 80, 0, 2)]),
    }
    paths = {name: work / (name.replace("-", "_") + suffix) for name in builders}
    for name, path in paths.items():
        if not path.exists():
            builders[name](path)
    return paths


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MiB of the largest process of one run of command (measured
    by GNU time, whose own small process forks the command: a fork of this one would count it)."""
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        status = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *command],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            check=False,
        )
        seconds = time.perf_counter() - start
        if status.returncode:
            errors.seek(0)
            raise SystemExit(f"failed: {' '.join(command)}: {errors.read().decode()[-500:]}")
        return seconds, int(Path(rss.name).read_text().split()[-1]) / 1024


def tree_rss_mb(command: list[str]) -> float:
    """Peak of the resident memory of command and its children summed, sampled every 20 ms."""
    proc = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.02)
    return peak / 2**20


def commands(peer: Path, pcap: Path) -> dict[str, list[str]]:
    return {
        "desy-agent": [str(AGENT), "extract", str(pcap), "-o", os.devnull, "-q"],
        "peer": [str(peer), "-e", str(pcap)],
    }


def best_of(runs: dict[str, list[str]]) -> dict[str, tuple[float, float]]:
    """Best seconds (and its run's peak RSS) of each command, the commands interleaved."""
    best = {name: (float("inf"), 0.0) for name in runs}
    for _ in range(RUNS):
        for name, command in runs.items():
            best[name] = min(best[name], timed(command))
    return best


def packets(path: Path) -> int:
    return sum(len(block) for block in blocks(path))


def speed_table(peer: Path, paths: dict[str, Path], start: dict[str, float]) -> None:
    """Per capture and command: best wall time, then the same less the command's start-up (its
    best time on a 1-packet pcap), each as a ratio to the peer's."""
    print(
        f"{'capture':<16}{'command':<11}{'packets':>9}{'best s':>9}{'packets/s':>11}"
        f"{'vs peer':>9}{'less start-up s':>17}{'vs peer':>9}{'RSS MiB':>9}{'tree MiB':>10}"
    )
    for name, path in paths.items():
        if name == "one-packet":
            continue
        runs = commands(peer, path)
        best, count = best_of(runs), packets(path)
        peer_work = max(best["peer"][0] - start["peer"], 1e-6)
        for command, (seconds, rss) in best.items():
            work = max(seconds - start[command], 1e-6)
            tree = tree_rss_mb(runs[command])
            print(
                f"{name:<16}{command:<11}{count:>9,}{seconds:>9.3f}{count / seconds:>11,.0f}"
                f"{best['peer'][0] / seconds:>8.2f}x{work:>17.3f}{peer_work / work:>8.2f}x"
                f"{rss:>9.0f}{tree:>10.0f}"
            )


def startup(peer: Path, pcap: Path) -> dict[str, float]:
    """Best seconds of each command on a 1-packet pcap (printed)."""
    best = {name: seconds for name, (seconds, _) in best_of(commands(peer, pcap)).items()}
    print("start-up (1-packet pcap, best s): " + ", ".join(f"{n} {s:.3f}" for n, s in best.items()))
    return best


def sh(*command: str | Path) -> str:
    """The output of a command that must succeed."""
    return subprocess.run(
        [str(c) for c in command], check=True, capture_output=True, text=True
    ).stdout


def agent_extra(work: Path) -> None:
    """Install HEAD's agent extra alone in a fresh venv; print its size and any ML package."""
    source, venv = work / "agent-src", work / "agent-venv"
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(venv, ignore_errors=True)
    source.mkdir(parents=True)
    sh("git", "-C", ROOT, "archive", f"--output={work / 'agent-src.tar'}", "HEAD")
    sh("tar", "-xf", work / "agent-src.tar", "-C", source)
    sh("uv", "venv", "-q", "--python", "3.11", venv)
    python = venv / "bin" / "python"
    sh("uv", "pip", "install", "-q", "--python", python, f"{source}[agent]")
    site = next((venv / "lib").glob("python3.*/site-packages"))
    size = sh("du", "-sm", site).split()[0]
    found = [name for name in ML_STACK if (site / name).exists()]
    sh(venv / "bin" / "desy-agent", "extract", "--help")
    listed = sh("uv", "pip", "list", "--python", python).splitlines()[2:]
    print(
        f"agent extra alone: {size} MiB of site-packages; "
        f"packages: {', '.join(line.split()[0] for line in listed)}; "
        f"ML stack: {', '.join(found) or 'none'}; desy-agent extract --help runs"
    )


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    peer = build_peer(WORK)
    paths = captures(WORK)
    head = sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD").strip()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}  DeSy {head}  peer {PEER_COMMIT[:7]}  "
        f"{os.cpu_count()} cores  load {os.getloadavg()[0]:.2f}  best of {RUNS}"
        + ("  SMALL" if SMALL else "")
    )
    speed_table(peer, paths, startup(peer, paths["one-packet"]))
    agent_extra(WORK)


if __name__ == "__main__":
    main()
