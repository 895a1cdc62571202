"""How many CPUs this process may use: the cores it may run on, within its container's CPU
quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), which `os.cpu_count()` ignores."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def quota(cgroup: Path = CGROUP) -> float | None:
    """The CPU quota in CPUs (e.g. 1.5), or None if there is none or it cannot be read."""
    try:
        if (cgroup / "cpu.max").exists():  # v2: "max 100000" or "150000 100000"
            limit, period = (cgroup / "cpu.max").read_text().split()
            return None if limit == "max" else int(limit) / int(period)
        limit = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())  # v1: -1 for none
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return None if limit <= 0 else limit / period
    except (OSError, ValueError):
        return None


def usable(cgroup: Path = CGROUP) -> int:
    """The CPUs this process may use: its affinity, capped by the quota rounded up; at least 1."""
    cores = len(os.sched_getaffinity(0))
    limit = quota(cgroup)
    return max(1, min(cores, math.ceil(limit)) if limit else cores)
