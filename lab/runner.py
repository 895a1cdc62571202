"""Run scenarios in the lab: capture each run on the bridge, extract it with the agent, label it."""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lab import table
from lab.network import Lab
from lab.scenarios import SCENARIOS, Run, Scenario
from lab.servers import Servers

log = logging.getLogger("desy.lab")


@dataclass(frozen=True)
class Plan:
    """What to run: scenarios, runs of each (normal ones get twice as many), seed, caps."""

    scenarios: tuple[str, ...]
    runs: int
    seed: int
    max_attack_rows: int


def run_id(scenario: str, index: int) -> str:
    return f"{scenario}/{index}"


def capture(lab: Lab, pcap: Path) -> subprocess.Popen:
    """tcpdump on the lab bridge, started and ready."""
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.switch,
            "tcpdump",
            "-i",
            "br0",
            "-s",
            "0",
            "-B",
            "65536",
            "-U",
            "-w",
            str(pcap),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"tcpdump did not start: {line.strip()}")
    return proc


def stop_capture(proc: subprocess.Popen) -> str:
    """Stop tcpdump; returns its closing statistics line (packets captured and dropped)."""
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return " ".join(line for line in err.splitlines() if "packets" in line)


def extract(pcap: Path, out: Path) -> None:
    """The agent's own extraction, exactly as in production."""
    argv = [
        sys.executable,
        "-m",
        "capture_agent.cli",
        "extract",
        str(pcap),
        "--out",
        str(out),
        "--quiet",
    ]
    subprocess.run(argv, check=True, timeout=600)


def play(
    lab: Lab, scenario: Scenario, index: int, seed: int, workdir: Path, max_attack_rows: int
) -> tuple[list[dict], dict]:
    """One run: capture, play, extract, label. Returns its rows and its manifest entry."""
    rid = run_id(scenario.name, index)
    rng = random.Random(f"{seed}/{rid}")
    stem = workdir / rid.replace("/", "-")
    pcap = stem.with_suffix(".pcap")
    started = time.monotonic()
    tcpdump = capture(lab, pcap)
    run = Run(lab, rng, workdir)
    try:
        scenario.play(run)
    finally:
        stats = stop_capture(tcpdump)
    extract(pcap, stem.with_suffix(".csv"))
    rows = table.label_rows(
        table.read_agent_csv(stem.with_suffix(".csv")),
        scenario.name,
        scenario.family,
        scenario.label,
        rid,
    )
    counts = Counter(row["category"] for row in rows)
    rows = table.cap_attacks(rows, max_attack_rows, random.Random(f"{seed}/{rid}/cap"))
    entry = {
        "run": rid,
        "seconds": round(time.monotonic() - started, 1),
        "connections": dict(counts),
        "kept": len(rows),
        "capture": stats,
        "commands": run.commands,
    }
    log.info("%-22s %5.1f s  %s  kept %d", rid, entry["seconds"], dict(counts), len(rows))
    return rows, entry


def run_lab(plan: Plan, out: Path, workdir: Path) -> dict[str, int]:
    """Run the plan, write the labelled table and its manifest (out with .json); returns row counts."""
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    manifest = []
    with Lab() as lab:
        # Servers drop privileges (nginx, Dovecot, vsftpd's users): their files need a directory
        # anyone can traverse, which a caller's workdir may not be.
        servers = Servers(
            lab, Path(tempfile.mkdtemp(prefix="desy-lab-servers-")), plan.seed
        ).start()
        try:
            for name in plan.scenarios:
                scenario = SCENARIOS[name]
                for index in range(plan.runs * (2 if scenario.family == "normal" else 1)):
                    run_rows, entry = play(
                        lab, scenario, index, plan.seed, workdir, plan.max_attack_rows
                    )
                    rows += run_rows
                    manifest.append(entry)
        finally:
            servers.stop()
            shutil.rmtree(servers.dir, ignore_errors=True)
    table.write(rows, out)
    out.with_suffix(".json").write_text(
        json.dumps({"seed": plan.seed, "runs": manifest}, indent=1) + "\n"
    )
    return dict(Counter(row["category"] for row in rows))
