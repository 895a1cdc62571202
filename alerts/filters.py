"""What analysts narrow the alerts to (status, time, agent, category, addresses, service,
probability), and the error for what the store cannot take."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy import and_, exists, literal, or_
from sqlalchemy.sql.elements import ColumnElement

from alerts.addresses import network_range
from alerts.tables import alerts, incidents
from desy.schema import CATEGORIES

STATUSES = ("new", "escalated", "archived")
ATTACK_CATEGORIES = tuple(c for c in CATEGORIES if c != "normal")


class BadQuery(ValueError):
    """A filter or action the store cannot take (said to the analyst as a 400)."""


def check_category(category: str) -> None:
    """BadQuery unless category is one of the model's."""
    if category not in CATEGORIES:
        raise BadQuery(f"unknown category {category!r}")


@dataclass(frozen=True)
class Filters:
    """What the analyst narrowed the alerts to; every field set must match."""

    status: str = "new"  # or "any"
    since: float | None = None  # epoch seconds (received)
    until: float | None = None
    agent: str | None = None
    category: str | None = None
    src: str | None = None  # an address or CIDR
    dst: str | None = None
    service: str | None = None
    min_probability: float | None = None

    def __post_init__(self) -> None:
        if self.status not in (*STATUSES, "any"):
            raise BadQuery(
                f"status must be one of {', '.join(STATUSES)} or any, not {self.status!r}"
            )
        if self.category is not None:
            check_category(self.category)
        for name in ("src", "dst"):
            value = getattr(self, name)
            if value is not None:
                try:
                    network_range(value)
                except ValueError:
                    raise BadQuery(f"{name} must be an address or a CIDR, not {value!r}") from None
        if self.min_probability is not None and not 0 <= self.min_probability <= 1:
            raise BadQuery("min_probability must be between 0 and 1")

    def conditions(self) -> list[ColumnElement[bool]]:
        c = alerts.c
        where: list[ColumnElement[bool]] = []
        if self.status != "any":
            where.append(c.status == self.status)
        if self.since is not None:
            where.append(c.received_at >= self.since)
        if self.until is not None:
            where.append(c.received_at < self.until)
        if self.category is None:  # normal verdicts (kept by --store-all) only when asked for
            where.append(c.category != "normal")
        for column, value in (
            (c.agent_id, self.agent),
            (c.category, self.category),
            (c.service, self.service),
        ):
            if value is not None:
                where.append(column == value)
        for column, value in ((c.src_key, self.src), (c.dst_key, self.dst)):
            if value is not None:
                first, last = network_range(value)
                where.append(column.between(first, last))
        if self.min_probability is not None:
            where.append(c.attack_probability >= self.min_probability)
        return where

    def incident_conditions(self) -> list[ColumnElement[bool]]:
        """The incidents (alerts.incidents) the filters select: with alerts in the status, seen
        within the time range, of the category, with the agent among the agents it names, with
        a probability at least the minimum; an address or service range matches what names the
        incident or, where its identity leaves that out (a flood's sources, a scan's
        destinations), any of its alerts."""
        c = incidents.c
        where: list[ColumnElement[bool]] = []
        if self.status != "any":
            where.append(c[f"{self.status}_alerts"] > 0)
        if self.since is not None:
            where.append(c.last_seen >= self.since)
        if self.until is not None:
            where.append(c.first_seen < self.until)
        if self.category is not None:
            where.append(c.category == self.category)
        if self.agent is not None:
            named = literal(",") + c.agents + literal(",")
            where.append(named.contains(f",{self.agent},", autoescape=True))
        if self.min_probability is not None:
            where.append(c.max_probability >= self.min_probability)
        one = alerts.c
        for own, alert, value in (
            (c.src_key, one.src_key, self.src),
            (c.dst_key, one.dst_key, self.dst),
        ):
            if value is not None:
                first, last = network_range(value)
                any_alert = exists().where(one.incident_id == c.id, alert.between(first, last))
                where.append(or_(own.between(first, last), and_(own.is_(None), any_alert)))
        if self.service is not None:
            any_alert = exists().where(one.incident_id == c.id, one.service == self.service)
            where.append(or_(c.service == self.service, and_(c.service == "", any_alert)))
        return where

    def as_params(self) -> dict[str, str]:
        """The filters that are set, as URL query parameters."""
        return {
            f.name: str(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }
