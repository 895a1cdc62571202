"""What analysts ask of the store: grouped alerts, one group's connections and history, the
overview, the agents; and what they do: triage actions (with an audit trail) and suppression
rules. Alerts are grouped by (category, source, destination)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Engine, and_, distinct, func, insert, literal_column, select, update
from sqlalchemy.sql.elements import ColumnElement

from alerts.addresses import network_range
from alerts.tables import (
    actions,
    agents,
    alerts,
    group_key,
    sources,
    suppressions,
    verdict_counts,
)
from desy.schema import CATEGORIES, FEATURE_NAMES

#: The width of the stored addresses (alerts.src_ip, dst_ip; actions too).
ADDRESS_WIDTH = alerts.c.src_ip.type.length
STATUSES = ("new", "escalated", "archived")
#: Runs the overview's aggregations, for every request at once.
_AGGREGATING = ThreadPoolExecutor(4, thread_name_prefix="desy-overview")
ATTACK_CATEGORIES = tuple(c for c in CATEGORIES if c != "normal")
#: Action → (status it sets, analyst category it records; "?" = the one the analyst chose). A
#: note changes nothing but the group's history.
ACTIONS: dict[str, tuple[str | None, str | None]] = {
    "note": (None, None),
    "archive": ("archived", None),
    "escalate": ("escalated", None),
    "restore": ("new", None),
    "false_positive": ("archived", "normal"),
    "confirm": ("archived", "?"),
}


class BadQuery(ValueError):
    """A filter or action the store cannot take (said to the analyst as a 400)."""


def _check_category(category: str) -> None:
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
            _check_category(self.category)
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

    def as_params(self) -> dict[str, str]:
        """The filters that are set, as URL query parameters."""
        return {
            f.name: str(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }


@dataclass(frozen=True)
class GroupKey:
    """An alert group, its addresses as stored: empty (records sent without endpoints), and
    whatever older servers stored (an IPv6 scope id holding "|", say) is a group like any other.
    Only what no store holds is refused: text wider than the column, or with a NUL byte."""

    category: str
    src_ip: str
    dst_ip: str

    def __post_init__(self) -> None:
        _check_category(self.category)
        for name in ("src_ip", "dst_ip"):
            value = getattr(self, name)
            if len(value) > ADDRESS_WIDTH or "\0" in value:
                raise BadQuery(
                    f"{name} must be an address of at most {ADDRESS_WIDTH} characters, "
                    f"not {value[:60]!r}"
                )

    def condition(self) -> ColumnElement[bool]:
        c = alerts.c
        return and_(
            c.group_key == group_key(self.category, self.src_ip, self.dst_ip),
            c.category == self.category,
            c.src_ip == self.src_ip,
            c.dst_ip == self.dst_ip,
        )


def _distinct_list(engine: Engine, column: Any) -> Any:
    """The distinct values of column in a group, comma-separated (SQLite and PostgreSQL spell it
    differently)."""
    if engine.dialect.name == "postgresql":
        return func.string_agg(distinct(column), literal_column("','"))
    return func.group_concat(distinct(column))


def inbox(engine: Engine, filters: Filters, limit: int = 200) -> list[dict[str, Any]]:
    """Alert groups, most recently seen first: count, first and last seen, highest attack
    probability, services, agents.

    Only the `limit` groups seen last are aggregated, through the group index: grouping every
    alert in the filters took seconds over a million alerts. That cost comes back only when a
    few groups have all the newest alerts (see _newest_groups)."""
    c = alerts.c
    where = filters.conditions()
    with engine.connect() as connection:
        groups = _newest_groups(connection, where, limit)
        if not groups:
            return []
        query = (
            select(
                c.category,
                c.src_ip,
                c.dst_ip,
                func.count().label("count"),
                func.min(c.received_at).label("first_seen"),
                func.max(c.received_at).label("last_seen"),
                func.max(c.attack_probability).label("max_probability"),
                _distinct_list(engine, c.service).label("services"),
                _distinct_list(engine, c.agent_id).label("agents"),
            )
            .where(c.group_key.in_(set(groups.values())), *where)
            .group_by(c.category, c.src_ip, c.dst_ip)
            .order_by(func.max(c.received_at).desc())
        )
        found = [dict(row._mapping) for row in connection.execute(query)]
    # a group sharing the hash of one of them is not one of them
    return [row for row in found if (row["category"], row["src_ip"], row["dst_ip"]) in groups]


def _newest_groups(
    connection: Any, where: list[ColumnElement[bool]], limit: int
) -> dict[tuple[str, str, str], int]:
    """The `limit` groups seen last (with their keys): the first distinct ones among the newest
    alerts, read newest first through the time index: 2 per group wanted, then 8 times as many
    until that many groups are found or the alerts run out (at most a seventh read twice)."""
    c = alerts.c
    newest = select(c.category, c.src_ip, c.dst_ip, c.group_key).where(*where)
    wanted = limit * 2
    while True:
        rows = connection.execute(newest.order_by(c.received_at.desc()).limit(wanted)).all()
        groups: dict[tuple[str, str, str], int] = {}
        for category, src_ip, dst_ip, key in rows:
            groups.setdefault((category, src_ip, dst_ip), key)
            if len(groups) == limit:
                return groups
        if len(rows) < wanted:
            return groups
        wanted *= 8


def group_alerts(
    engine: Engine, key: GroupKey, filters: Filters, limit: int = 500
) -> list[dict[str, Any]]:
    """The connections of one group, newest first, each with where its agent said it captured
    it (capture, log_dir: None for alerts stored before agents said)."""
    query = (
        select(alerts, sources.c.capture, sources.c.log_dir)
        .outerjoin(sources, sources.c.id == alerts.c.source_id)
        .where(key.condition(), *filters.conditions())
        .order_by(alerts.c.received_at.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [
            row._asdict() | {"features": _by_name(row.features)}
            for row in connection.execute(query)
        ]


def _by_name(features: Any) -> dict[str, Any]:
    """An alert's stored features by name; what an older or odd row holds (not 41 values) as
    far as it goes."""
    if isinstance(features, dict):
        return features
    return dict(zip(FEATURE_NAMES, features)) if isinstance(features, list) else {}


def history(engine: Engine, key: GroupKey) -> list[dict[str, Any]]:
    """What analysts did to the group, newest first."""
    c = actions.c
    query = (
        select(actions)
        .where(c.category == key.category, c.src_ip == key.src_ip, c.dst_ip == key.dst_ip)
        .order_by(c.at.desc())
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def act(
    engine: Engine,
    keys: list[GroupKey],
    filters: Filters,
    action: str,
    user: str,
    note: str = "",
    category: str | None = None,
) -> int:
    """Apply an action to the alerts of each group that the filters select, and record it (who,
    when, note, how many) in the audit trail; returns the number of alerts changed."""
    if action not in ACTIONS:
        raise BadQuery(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    status, verdict = ACTIONS[action]
    if verdict == "?":
        if category not in ATTACK_CATEGORIES:
            raise BadQuery(
                f"confirm needs an attack category ({', '.join(ATTACK_CATEGORIES)}), not {category!r}"
            )
        verdict = category
    if not keys:
        raise BadQuery("no alert group selected")
    if action == "note" and not note.strip():
        raise BadQuery("a note needs some text")
    values: dict[str, Any] = ({"status": status} if status else {}) | (
        {"analyst_category": verdict} if verdict else {}
    )
    changed, now = 0, time.time()
    with engine.begin() as connection:
        for key in keys:
            selected = update(alerts).where(key.condition(), *filters.conditions())
            count = connection.execute(selected.values(values)).rowcount if values else 0
            connection.execute(
                insert(actions).values(
                    at=now,
                    user=user,
                    action=action,
                    category=key.category,
                    src_ip=key.src_ip,
                    dst_ip=key.dst_ip,
                    alerts=count,
                    note=note,
                )
            )
            changed += count
    return changed


def overview(engine: Engine, filters: Filters, buckets: int = 60, top: int = 10) -> dict[str, Any]:
    """Alerts over time per category (in `buckets` equal steps of the filtered time range) and
    the top sources, destinations and services. The four aggregations each read every alert in
    range, so they run at once, each on its own connection (the drivers let go of the GIL
    while the database works; on SQLite and 2 cores, 0.6 of the time of running them in turn),
    in a pool shared by every request: however many analysts open it, 4 connections at most."""
    c = alerts.c
    where = filters.conditions()
    with engine.connect() as connection:
        first, last = connection.execute(
            select(func.min(c.received_at), func.max(c.received_at)).where(*where)
        ).one()
    queries: dict[str, Any] = {
        name: select(column, func.count().label("n"))
        .where(*where)
        .group_by(column)
        .order_by(func.count().desc(), column)
        .limit(top)
        for name, column in (
            ("sources", c.src_ip),
            ("destinations", c.dst_ip),
            ("services", c.service),
        )
    }
    result: dict[str, Any] = {"timeline": [], "step": 0.0}
    if first is not None:
        start = filters.since or first  # since 0: all alerts, from the first
        step = max(60.0, ((filters.until or last + 1) - start) / buckets)
        bucket = func.floor((c.received_at - start) / step).label("bucket")
        queries["timeline"] = (
            select(bucket, c.category, func.count())
            .where(*where)
            .group_by(bucket, c.category)
            .order_by(bucket)
        )
        result |= {"start": start, "step": step, "buckets": buckets}

    def rows(query: Any) -> list[tuple]:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    in_memory = engine.url.database in (None, "", ":memory:")  # one connection's own database
    run = map if in_memory else _AGGREGATING.map
    answers = dict(zip(queries, run(rows, queries.values()), strict=True))
    if "timeline" in answers:
        result["timeline"] = [
            (result["start"] + int(b) * result["step"], category, n)
            for b, category, n in answers.pop("timeline")
        ]
    return result | answers


def agent_sources(engine: Engine, agent_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Where each of these agents captures (capture source, log directory), as it last said."""
    query = select(agents.c.agent_id, agents.c.capture, agents.c.log_dir).where(
        agents.c.agent_id.in_(sorted(agent_ids))
    )
    with engine.connect() as connection:
        return {row.agent_id: row._asdict() for row in connection.execute(query)}


def agent_status(engine: Engine, now: float | None = None) -> list[dict[str, Any]]:
    """Every agent: last seen, model version, flows/s over the last 5 minutes, alerts in the last hour."""
    now = time.time() if now is None else now
    since_minute = int(now // 60) - 5  # the last 5 whole minutes and the current one
    with engine.connect() as connection:
        known = [
            dict(row._mapping)
            for row in connection.execute(select(agents).order_by(agents.c.agent_id))
        ]
        flows = dict(
            connection.execute(
                select(verdict_counts.c.agent_id, func.sum(verdict_counts.c.flows))
                .where(verdict_counts.c.minute >= since_minute)
                .group_by(verdict_counts.c.agent_id)
            ).all()
        )
        recent = dict(
            connection.execute(
                select(alerts.c.agent_id, func.count())
                .where(*Filters(status="any", since=now - 3600).conditions())
                .group_by(alerts.c.agent_id)
            ).all()
        )
    for agent in known:
        seconds = now - since_minute * 60
        agent["flows_per_second"] = round(float(flows.get(agent["agent_id"], 0)) / seconds, 2)
        agent["alerts_last_hour"] = recent.get(agent["agent_id"], 0)
    return known


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
