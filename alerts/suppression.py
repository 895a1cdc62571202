"""Suppression rules: alerts matching one are archived as they are stored."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from alerts.addresses import network_range
from alerts.tables import suppressions

RELOAD_SECONDS = 5.0  # how soon a new or removed rule takes effect in a running server


@dataclass(frozen=True)
class Rule:
    """Every field that is set must match (CIDRs as key ranges)."""

    category: str | None
    src: tuple[bytes, bytes] | None
    dst: tuple[bytes, bytes] | None
    service: str | None

    @classmethod
    def from_row(cls, row: Any) -> Rule:
        return cls(
            row.category or None,
            network_range(row.src_cidr) if row.src_cidr else None,
            network_range(row.dst_cidr) if row.dst_cidr else None,
            row.service or None,
        )

    def matches(self, alert: Any) -> bool:
        """Whether the rule matches an alert row (category, service, src_key, dst_key)."""
        return (
            (self.category is None or alert.category == self.category)
            and (self.service is None or alert.service == self.service)
            and _within(alert.src_key, self.src)
            and _within(alert.dst_key, self.dst)
        )


def _within(key: bytes | None, span: tuple[bytes, bytes] | None) -> bool:
    return span is None or (key is not None and span[0] <= key <= span[1])


class Suppressions:
    """The store's rules, reloaded every RELOAD_SECONDS."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rules: list[Rule] = []
        self.loaded = float("-inf")

    def apply(self, rows: list[Any]) -> list[Any]:
        """The rows (AlertRows about to be stored), with those a rule matches archived."""
        if time.monotonic() - self.loaded >= RELOAD_SECONDS:
            with self.engine.connect() as connection:
                self.rules = [
                    Rule.from_row(row)
                    for row in connection.execute(
                        select(suppressions).where(suppressions.c.removed_at.is_(None))
                    )
                ]
            self.loaded = time.monotonic()
        if not self.rules:
            return rows
        return [
            row._replace(status="archived") if any(r.matches(row) for r in self.rules) else row
            for row in rows
        ]
