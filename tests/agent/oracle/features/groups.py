"""Incremental counts over a group of connections (one destination host or one service), shared
by the time-window and host-window plugins."""

from __future__ import annotations

from collections import deque


class Group:
    """Counts over the members of one window group."""

    __slots__ = ("keys", "n", "ports", "rerror", "ring", "serror")

    def __init__(self, ring: bool = False) -> None:
        self.n = self.serror = self.rerror = 0
        self.keys: dict = {}  # service -> count in a host group, host -> count in a service group
        self.ports: dict = {}  # source port -> count (host-window groups only)
        self.ring: deque | None = deque() if ring else None


def bump(counts: dict, key: object, step: int) -> None:
    """Add step to counts[key], removing the key when it reaches 0."""
    value = counts.get(key, 0) + step
    if value:
        counts[key] = value
    else:
        del counts[key]


def pct(part: int, whole: int) -> float:
    """part / whole rounded half-up to 2 decimals, as the dataset prints rates (faster than round())."""
    return int(part * 100 / whole + 0.5) / 100
