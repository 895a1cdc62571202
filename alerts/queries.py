"""What analysts ask of the store: incidents (alerts.incidents), one incident's groups,
connections and history, grouped alerts (alerts.groups), one group's connections and history, the
overview, the agents. Their triage actions: alerts.triage; suppression rules: alerts.suppression."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, distinct, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from alerts.filters import Filters
from alerts.groups import GroupKey, group_columns, group_of
from alerts.incidents import Sketch
from alerts.tables import actions, agents, alerts, incidents, sources, verdict_counts
from desy.schema import FEATURE_NAMES

#: Runs the overview's aggregations, for every request at once.
_AGGREGATING = ThreadPoolExecutor(4, thread_name_prefix="desy-overview")


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
    c, columns = alerts.c, group_columns(alerts)
    where = filters.conditions()
    with engine.connect() as connection:
        groups = _newest_groups(connection, where, limit)
        if not groups:
            return []
        query = (
            select(
                *columns,
                func.count().label("count"),
                func.min(c.received_at).label("first_seen"),
                func.max(c.received_at).label("last_seen"),
                func.max(c.attack_probability).label("max_probability"),
                _distinct_list(engine, c.service).label("services"),
                _distinct_list(engine, c.agent_id).label("agents"),
            )
            .where(c.group_key.in_(set(groups.values())), *where)
            .group_by(*columns)
            .order_by(func.max(c.received_at).desc())
        )
        found = connection.execute(query).all()
    # a group sharing the hash of one of them is not one of them
    return [dict(row._mapping) for row in found if group_of(row) in groups]


#: An incident's columns the pages show (not its counts' state).
INCIDENT_COLUMNS = tuple(c for c in incidents.c if not c.name.endswith(("_sketch", "_key")))
#: "A handful": the overview's top sources leave out sources with fewer alerts than this when
#: the range holds a flood from spoofed sources: a dos incident from at least SPOOFED_SOURCES
#: sources that sent fewer than a handful of connections each on average.
HANDFUL, SPOOFED_SOURCES = 5, 100


def _shown(row: Any) -> dict[str, Any]:
    """An incident as the pages show it: which counts are estimates (alerts.incidents.Sketch)."""
    incident = dict(row._mapping)
    incident["estimated"] = {
        name for name in ("sources", "destinations", "ports") if incident[name] >= Sketch.K
    }
    return incident


def incident_inbox(engine: Engine, filters: Filters, limit: int = 200) -> list[dict[str, Any]]:
    """The incidents the filters select (Filters.incident_conditions), most recently seen first."""
    c = incidents.c
    query = (
        select(*INCIDENT_COLUMNS)
        .where(*filters.incident_conditions())
        .order_by(c.last_seen.desc(), c.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [_shown(row) for row in connection.execute(query)]


def incident(engine: Engine, incident_id: int) -> dict[str, Any] | None:
    """One incident (None if there is none of that id)."""
    query = select(*INCIDENT_COLUMNS).where(incidents.c.id == incident_id)
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else _shown(row)


def incident_timeline(engine: Engine, found: dict[str, Any], buckets: int = 60) -> dict[str, Any]:
    """An incident's alerts over time (as received), in `buckets` equal steps of at least a
    second from its first to its last seen: the overview's timeline, for this incident alone."""
    start, last = found["first_seen"], found["last_seen"]
    step = max(1.0, (last - start) / buckets)
    c = alerts.c
    bucket = func.floor((c.received_at - start) / step).label("bucket")
    query = (
        select(bucket, func.count())
        .where(c.incident_id == found["id"])
        .group_by(bucket)
        .order_by(bucket)
    )
    with engine.connect() as connection:
        counts = connection.execute(query).all()
    steps = min(buckets, int((last - start) // step)) + 1
    return {
        "timeline": [(start + int(b) * step, found["category"], n) for b, n in counts],
        "start": start,
        "step": step,
        "buckets": steps,
    }


def incident_groups(engine: Engine, incident_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """An incident's alert groups (source, destination), the largest first, each with its
    count, new alerts, first and last seen, highest probability, services, agents."""
    c, columns = alerts.c, group_columns(alerts)
    query = (
        select(
            *columns,
            func.count().label("count"),
            func.count().filter(c.status == "new").label("new"),
            func.min(c.received_at).label("first_seen"),
            func.max(c.received_at).label("last_seen"),
            func.max(c.attack_probability).label("max_probability"),
            _distinct_list(engine, c.service).label("services"),
            _distinct_list(engine, c.agent_id).label("agents"),
        )
        .where(c.incident_id == incident_id)
        .group_by(*columns)
        .order_by(func.count().desc(), *columns)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def incident_alerts(engine: Engine, incident_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """An incident's connections, newest first (as group_alerts)."""
    return _connections(engine, [alerts.c.incident_id == incident_id], limit)


def incident_history(engine: Engine, incident_id: int) -> list[dict[str, Any]]:
    """What analysts did to the incident, or to groups of it, newest first."""
    query = (
        select(actions)
        .where(actions.c.incident_id == incident_id)
        .order_by(actions.c.at.desc(), actions.c.id.desc())
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _newest_groups(
    connection: Any, where: list[ColumnElement[bool]], limit: int
) -> dict[tuple[str, str, str], int]:
    """The `limit` groups seen last (with their keys): the first distinct ones among the newest
    alerts, read newest first through the time index: 2 per group wanted, then 8 times as many
    until that many groups are found or the alerts run out (at most a seventh read twice)."""
    c = alerts.c
    newest = select(*group_columns(alerts), c.group_key).where(*where)
    wanted = limit * 2
    while True:
        rows = connection.execute(newest.order_by(c.received_at.desc()).limit(wanted)).all()
        groups: dict[tuple[str, str, str], int] = {}
        for row in rows:
            groups.setdefault(group_of(row), row.group_key)
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
    return _connections(engine, [key.condition(), *filters.conditions()], limit)


def _connections(engine: Engine, conditions: list[Any], limit: int) -> list[dict[str, Any]]:
    """The alerts meeting conditions, newest first, with their agent's capture and log_dir."""
    query = (
        select(alerts, sources.c.capture, sources.c.log_dir)
        .outerjoin(sources, sources.c.id == alerts.c.source_id)
        .where(*conditions)
        .order_by(alerts.c.received_at.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [
            row._asdict() | {"features": _by_name(row.features)}
            for row in connection.execute(query)
        ]


def alert(engine: Engine, alert_id: int) -> dict[str, Any] | None:
    """One stored alert, its features by name; None if there is no such alert."""
    with engine.connect() as connection:
        row = connection.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    return None if row is None else row._asdict() | {"features": _by_name(row.features)}


def _by_name(features: Any) -> dict[str, Any]:
    """An alert's stored features by name; what an older or odd row holds (not 41 values) as
    far as it goes."""
    if isinstance(features, dict):
        return features
    return dict(zip(FEATURE_NAMES, features)) if isinstance(features, list) else {}


def history(engine: Engine, key: GroupKey) -> list[dict[str, Any]]:
    """What analysts did to the group, newest first."""
    query = select(actions).where(key.condition(actions)).order_by(actions.c.at.desc())
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def overview(engine: Engine, filters: Filters, buckets: int = 60, top: int = 10) -> dict[str, Any]:
    """Alerts over time per category (in `buckets` equal steps of the filtered time range), the
    top sources, destinations and services, and the incidents in range (how many, with how many
    alerts). When the range holds a flood from spoofed sources (see HANDFUL), the top sources
    leave out those with fewer than a handful of alerts, and spoofed_victim names its victim. The four aggregations each read every alert in
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
    c_i = incidents.c
    incident_where = filters.incident_conditions()
    spoofed = (
        select(c_i.dst_ip)
        .where(
            *incident_where,
            c_i.category == "dos",
            c_i.sources >= SPOOFED_SOURCES,
            c_i.connections < HANDFUL * c_i.sources,
        )
        .order_by(c_i.sources.desc())
        .limit(1)
    )
    with engine.connect() as connection:
        flooded = connection.execute(spoofed).scalar()
        counted = connection.execute(
            select(func.count(), func.coalesce(func.sum(c_i.connections), 0)).where(*incident_where)
        ).one()
    if flooded is not None:
        queries["sources"] = queries["sources"].having(func.count() >= HANDFUL)
    result: dict[str, Any] = {
        "timeline": [],
        "step": 0.0,
        "incidents": counted[0],
        "incident_alerts": int(counted[1]),
        "spoofed_victim": flooded,
        "handful": HANDFUL,
    }
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
