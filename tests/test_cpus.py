"""Server workers by default: one per CPU the process may use, within a container's quota."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving import cpus


def cgroup_v2(root, text: str):
    (root / "cpu.max").write_text(text)
    return root


def cgroup_v1(root, quota: str, period: str = "100000"):
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: cgroup_v2(root, "max 100000\n"), None),
        (lambda root: cgroup_v2(root, "150000 100000\n"), 1.5),
        (lambda root: cgroup_v1(root, "-1"), None),
        (lambda root: cgroup_v1(root, "50000"), 0.5),
        (lambda root: cgroup_v2(root, "garbage\n"), None),
        (lambda root: root, None),  # no cgroup files at all
    ],
)
def test_quota_from_cgroup_files(tmp_path, make, expected):
    assert cpus.quota(make(tmp_path)) == expected


def test_a_quota_caps_the_cores_rounded_up(tmp_path):
    half, loose, none = (tmp_path / name for name in ("half", "loose", "none"))
    for root in (half, loose, none):
        root.mkdir()
    assert cpus.usable(cgroup_v1(half, "50000")) == 1  # half a CPU: still one worker
    cores = cpus.usable(none)
    assert cores >= 1
    assert cpus.usable(cgroup_v2(loose, f"{cores * 100000 + 1} 100000")) == cores


def test_the_cores_a_process_may_run_on():
    pinned = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-c",
            "from serving import cpus; print(cpus.usable())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pinned.stdout.strip() == "1"
