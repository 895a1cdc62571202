"""Where an alert's connection was captured, and the command that cuts its packets out."""

from __future__ import annotations

import shlex
from typing import Any


def origin(alert: dict[str, Any], agent_now: dict[str, Any]) -> dict[str, Any]:
    """Where an alert's connection was captured: what its agent said then (else what it says
    now, flagged), and the shell-quoted `desy-agent pcap-slice` command that cuts its packets
    out on that host (None without endpoints). Agents' words are quoted: never a command."""
    said: dict[str, Any] = {}
    for name in ("capture", "log_dir"):
        said[name] = alert.get(name) or agent_now.get(name) or ""
        said[f"{name}_now"] = bool(said[name]) and not alert.get(name)
    said["slice"] = None
    if alert["src_ip"] and alert["dst_ip"]:
        words = [
            "desy-agent", "pcap-slice", "--log-dir", said["log_dir"] or "LOG_DIR",
            "--src", alert["src_ip"], "--dst", alert["dst_ip"],
            "--src-port", alert["src_port"], "--dst-port", alert["dst_port"],
            "--start", alert["start_time"], "--end", alert["end_time"],
            "-o", f"alert-{alert['id']}.pcap",
        ]  # fmt: skip
        said["slice"] = shlex.join(str(word) for word in words)
    return said
