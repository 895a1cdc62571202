"""Throttling of sign-ins, against guessing and floods (in each dashboard process's memory).

Guessing: after FREE_FAILURES failures in a row, an account, and a source address (an IPv6
/64), are locked for a time that doubles with each further failure (1 s, 2 s, 4 s... at most
MAX_LOCK_SECONDS); a sign-in while locked is refused (429) without checking its password, and
counts no further failure. A success ends the locks it was under.

So that nobody can lock an analyst out for good by failing in their name: a browser that has
signed in to an account before carries a device cookie for it (accounts.device_token), and its
sign-ins to that account are counted apart, under the account's trusted browsers, never under
the account's or the address's own count (OWASP's "device cookies").

Floods: password checks run one at a time, and at most WAITING wait for theirs, of which at
most WAITING_PER_SOURCE from one source address (or one account's trusted browsers): a flood
from one address takes two places, the other analysts' sign-ins find theirs.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass

FREE_FAILURES = 5
MAX_LOCK_SECONDS = 300.0
#: Failures older than this are forgotten; at most MAX_KEPT accounts and addresses are kept.
FORGET_SECONDS = 3600.0
MAX_KEPT = 100_000
WAITING = 16
WAITING_PER_SOURCE = 2

Key = tuple[str, str]  # ("account" | "source" | "device", name or address)


@dataclass
class Failures:
    """Failures in a row of one account or address, and when the last one was."""

    count: int = 0
    last: float = 0.0

    def locked_for(self, now: float) -> float:
        """Seconds until the next sign-in may be checked (0: now)."""
        if self.count < FREE_FAILURES:
            return 0.0
        lock = min(2.0 ** (self.count - FREE_FAILURES), MAX_LOCK_SECONDS)
        return max(0.0, self.last + lock - now)


def source_of(host: str) -> str:
    """The address sign-ins are counted under: an IPv4 address, an IPv6 /64 (one host has many)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def keys_for(name: str, source: str, trusted: bool) -> list[Key]:
    """What a sign-in as name from source is counted under."""
    return [("device", name)] if trusted else [("account", name), ("source", source)]


class SignIns:
    """Failures by account and address, and the sign-ins waiting for their password check."""

    def __init__(self) -> None:
        self.failures: OrderedDict[Key, Failures] = OrderedDict()
        self.waiting: Counter[Key] = Counter()
        self.refused = 0  # sign-ins refused while locked, since start

    def locked_for(self, keys: list[Key]) -> float:
        """Seconds until a sign-in counted under keys may be checked (0: now)."""
        now = time.monotonic()
        self._forget(now)
        wait = max(
            (self.failures[k].locked_for(now) for k in keys if k in self.failures), default=0
        )
        self.refused += wait > 0
        return wait

    def said(self, keys: list[Key]) -> str:
        """The failures in a row under keys, for the log."""
        counts = (self.failures[k].count if k in self.failures else 0 for k in keys)
        return ", ".join(
            f"{n} failures in a row for the {kind}" for (kind, _), n in zip(keys, counts)
        )

    def failed(self, keys: list[Key]) -> None:
        now = time.monotonic()
        for key in keys:
            failures = self.failures.pop(key, None) or Failures()
            failures.count, failures.last = failures.count + 1, now
            self.failures[key] = failures  # the newest last
        while len(self.failures) > MAX_KEPT:
            self.failures.popitem(last=False)

    def succeeded(self, keys: list[Key]) -> None:
        for key in keys:
            self.failures.pop(key, None)

    def enter(self, slot: Key) -> bool:
        """Take a place to wait for a password check; False if none is left for slot."""
        if self.waiting.total() >= WAITING or self.waiting[slot] >= WAITING_PER_SOURCE:
            return False
        self.waiting[slot] += 1
        return True

    def leave(self, slot: Key) -> None:
        self.waiting[slot] -= 1
        if not self.waiting[slot]:
            del self.waiting[slot]

    def _forget(self, now: float) -> None:
        while self.failures:
            key, oldest = next(iter(self.failures.items()))
            if now - oldest.last < FORGET_SECONDS:
                return
            del self.failures[key]
