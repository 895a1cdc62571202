"""Suppression rules: analysts add and remove them, and alerts matching one are archived as they
are stored."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, update

from alerts.addresses import network_range
from alerts.filters import BadQuery, Filters
from alerts.tables import suppressions

RELOAD_SECONDS = 5.0  # how soon a new or removed rule takes effect in a running server


def list_suppressions(engine: Engine) -> list[dict[str, Any]]:
    """Every rule, in force or removed (removed_at set), oldest first."""
    with engine.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(select(suppressions).order_by(suppressions.c.id))
        ]


def add_suppression(
    engine: Engine,
    user: str,
    reason: str,
    category: str | None = None,
    src_cidr: str | None = None,
    dst_cidr: str | None = None,
    service: str | None = None,
) -> int:
    """A new rule (at least one condition, and a reason); returns its id."""
    if not reason.strip():
        raise BadQuery("a suppression rule needs a reason")
    if not any((category, src_cidr, dst_cidr, service)):
        raise BadQuery("a suppression rule needs at least one condition")
    Filters(status="any", category=category, src=src_cidr, dst=dst_cidr)  # validates them
    with engine.begin() as connection:
        return connection.execute(
            insert(suppressions).values(
                created_at=time.time(),
                user=user,
                reason=reason.strip(),
                category=category,
                src_cidr=src_cidr,
                dst_cidr=dst_cidr,
                service=service,
            )
        ).inserted_primary_key[0]


def remove_suppression(engine: Engine, rule_id: int, user: str) -> bool:
    """Take a rule out of force, recording who and when (the rule stays, for the record);
    False if there is no such rule in force."""
    c = suppressions.c
    with engine.begin() as connection:
        return (
            connection.execute(
                update(suppressions)
                .where(c.id == rule_id, c.removed_at.is_(None))
                .values(removed_at=time.time(), removed_by=user)
            ).rowcount
            == 1
        )


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
