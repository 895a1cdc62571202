"""Incidents: the alerts of one attack, the unit analysts work on, chosen by what the attack is.

- `dos`: one incident per (destination, category), whatever the sources: a flood from spoofed
  addresses is one incident against its victim;
- `probe`: one per (source, category): a scan over many ports, or a sweep over many hosts;
- `r2l`, `u2r`: one per (source, destination, service): one guesser against one service.

An incident ends after a quiet period (QUIET_SECONDS by default, the server's
--incident-quiet-seconds) without a new alert of it, by the time the server received them; the
same pattern later is a new incident. The writer (alerts.store) assigns every stored attack alert
to one, under its write lock, and keeps the incident's counts as it goes: connections, first and
last seen, distinct sources, destinations and destination ports (Sketch: exact below 1,024
values, then an estimate within about 3 %), the most connections starting in one second (their
capture time), the highest attack probability, its first AGENTS_KEPT agents, and its alerts by
status. Normal verdicts (kept with --store-all) belong to no incident.
"""

from __future__ import annotations

import hashlib
import math
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from operator import attrgetter, itemgetter, le
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update

from alerts.database import binds, positional_sql
from alerts.tables import alerts, incidents

#: Seconds without a new alert after which an incident is over.
QUIET_SECONDS = 900.0
#: The agents an incident names (more are shown as "…").
AGENTS_KEPT = 16
MORE_AGENTS = "…"
#: The fields each kind of incident counts distinct values of (the others its identity fixes).
COUNTED: dict[str, tuple[str, ...]] = {
    "dos": ("sources", "ports"),
    "probe": ("destinations", "ports"),
    "r2l": ("ports",),
    "u2r": ("ports",),
}
_COUNT_SOURCES = {category for category, counted in COUNTED.items() if "sources" in counted}
_COUNT_DESTINATIONS = {c for c, counted in COUNTED.items() if "destinations" in counted}
assert all("ports" in counted for counted in COUNTED.values())  # _fresh counts them always
#: The alert field each count is of.
COUNTED_FIELD = {"sources": "src_ip", "destinations": "dst_ip", "ports": "dst_port"}
STATUS_COLUMNS = {
    "new": "new_alerts",
    "escalated": "escalated_alerts",
    "archived": "archived_alerts",
}


def identity(category: str, src_ip: str, dst_ip: str, service: str) -> tuple[str, str, str, str]:
    """What names the incident of an alert: (category, source, destination, service), with ""
    for what the kind of attack leaves out."""
    if category == "dos":
        return (category, "", dst_ip, "")
    if category == "probe":
        return (category, src_ip, "", "")
    return (category, src_ip, dst_ip, service)


@lru_cache(maxsize=65_536)
def incident_key(category: str, src_ip: str, dst_ip: str, service: str) -> int:
    """A 64-bit hash of an incident's identity (as alerts.groups.group_key): its index key;
    distinct identities can share one, the strings are compared too."""
    text = f"{category}|{src_ip}|{dst_ip}|{service}".encode()
    digest = hashlib.md5(text, usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Sketch:
    """A distinct count in bounded state: the K smallest 64-bit hashes of the values seen (K
    minimum values, Bar-Yossef et al. 2002). Below K values it holds them all and the count is
    exact; from K on, the estimate (K - 1) / (the K-th smallest hash / 2^64) has a relative
    standard error of 1/sqrt(K - 2), 3.1 % for K = 1,024. At most 8 KiB, merged by union."""

    K = 1024

    @staticmethod
    def decode(blob: bytes | None) -> array:
        values = array("Q")
        if blob:
            values.frombytes(blob)
            if sys.byteorder == "big":  # stored little-endian
                values.byteswap()
        return values

    @staticmethod
    def encode(values: Iterable[int]) -> bytes:
        packed = array("Q", values)
        if sys.byteorder == "big":
            packed.byteswap()
        return packed.tobytes()

    @classmethod
    def add(cls, blob: bytes | None, hashes: set[int]) -> tuple[bytes, int]:
        """The state with hashes added, and the count."""
        old = cls.decode(blob)
        if len(old) >= cls.K:
            limit = old[-1]
            hashes = {h for h in hashes if h < limit}
        if not hashes.difference(old):
            return blob or b"", cls.count(old)
        merged = sorted(hashes.union(old))[: cls.K]
        return cls.encode(merged), cls.count(merged)

    @classmethod
    def count(cls, values: Sequence[int]) -> int:
        if len(values) < cls.K:
            return len(values)
        return round((cls.K - 1) * 2.0**64 / (values[-1] + 1))


@lru_cache(maxsize=65_536)
def value_hash(value: Any) -> int:
    """A value's 64-bit hash, the same in every process (Python's own is salted per process)."""
    digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


_RECEIVED = attrgetter("received_at")
_PROBABILITY = attrgetter("attack_probability")
_START = attrgetter("start_time")
_AGENT = attrgetter("agent_id")
_STATUS = attrgetter("status")
_FIELD = {name: attrgetter(field) for name, field in COUNTED_FIELD.items()}


def _fresh(ident: tuple[str, str, str, str], key: int, row: Any) -> dict[str, Any]:
    """A new incident's state, its first alert (row) counted: what most incidents are, so it is
    made at once, without _absorb."""
    category, src, dst, service = ident
    at, status = row.received_at, row.status
    return {
        "id": None,
        "incident_key": key,
        "category": category,
        "src_ip": src,
        "dst_ip": dst,
        "service": service,
        "src_key": row.src_key if src else None,
        "dst_key": row.dst_key if dst else None,
        "first_seen": at,
        "last_seen": at,
        "connections": 1,
        "sources": 1,
        "destinations": 1,
        "ports": 1,
        "sources_sketch": _one(row.src_ip) if category in _COUNT_SOURCES else None,
        "destinations_sketch": _one(row.dst_ip) if category in _COUNT_DESTINATIONS else None,
        "ports_sketch": _one(row.dst_port),
        "agents": row.agent_id,
        "peak_rate": 1,
        "rate_second": int(row.start_time),
        "rate_count": 1,
        "max_probability": row.attack_probability,
        "new_alerts": int(status == "new"),
        "escalated_alerts": int(status == "escalated"),
        "archived_alerts": int(status == "archived"),
    }


@lru_cache(maxsize=65_536)
def _one(value: Any) -> bytes:
    """The Sketch of one value."""
    return value_hash(value).to_bytes(8, "little")


def _absorb(state: dict[str, Any], members: list[Any]) -> None:
    """Count alerts (rows of one incident) into its state."""
    state["connections"] += len(members)
    if len(members) == 1:
        (row,) = members
        state["first_seen"] = min(state["first_seen"], row.received_at)
        state["last_seen"] = max(state["last_seen"], row.received_at)
        state["max_probability"] = max(state["max_probability"], row.attack_probability)
        seconds = {int(row.start_time): 1}
        agents = {row.agent_id}
        state[STATUS_COLUMNS.get(row.status, "new_alerts")] += 1
    else:
        received = list(map(_RECEIVED, members))
        state["first_seen"] = min(state["first_seen"], min(received))
        state["last_seen"] = max(state["last_seen"], max(received))
        state["max_probability"] = max(state["max_probability"], max(map(_PROBABILITY, members)))
        seconds = Counter(map(int, map(_START, members)))
        agents = set(map(_AGENT, members))
        for status, n in Counter(map(_STATUS, members)).items():
            state[STATUS_COLUMNS.get(status, "new_alerts")] += n
    for name in COUNTED[state["category"]]:
        hashes = {value_hash(v) for v in map(_FIELD[name], members)}
        state[f"{name}_sketch"], state[name] = Sketch.add(state[f"{name}_sketch"], hashes)
    # the latest second's count goes on in the next write (one request's connections span it)
    if state["rate_second"] in seconds:
        seconds[state["rate_second"]] += state["rate_count"]
    latest = max(seconds)
    if latest >= state["rate_second"]:
        state["rate_second"], state["rate_count"] = latest, seconds[latest]
    state["peak_rate"] = max(state["peak_rate"], max(seconds.values()))
    known = state["agents"].split(",") if state["agents"] else []
    added = sorted(agents.difference(known))
    if added and MORE_AGENTS not in known:
        room = AGENTS_KEPT - len(known)
        known += added[:room]
        if len(added) > room:
            known.append(MORE_AGENTS)
        state["agents"] = ",".join(known)


def _segments(members: list[int], rows: Sequence[Any], quiet: float) -> list[list[int]]:
    """The rows of one identity (indexes) cut where they fall quiet for longer than quiet."""
    received = [rows[i].received_at for i in members]
    in_order = all(map(le, received, received[1:]))  # as a server receives them, mostly
    if in_order and received[-1] - received[0] <= quiet:
        return [members]
    segments: list[list[int]] = []
    last = -math.inf
    for at, i in zip(received, members) if in_order else sorted(zip(received, members)):
        if at - last > quiet:
            segments.append([i])
        else:
            segments[-1].append(i)
        last = at
    return segments


#: The columns the writer sets (all of them), in order, for its INSERT.
COLUMNS = tuple(c.name for c in incidents.columns)


def assign(
    connection: Connection, rows: Sequence[Any], quiet: float = QUIET_SECONDS, report: bool = True
) -> tuple[list[int | None], list[dict[str, Any]]]:
    """The incident of each row (alerts about to be stored, or stored ones: received_at,
    category, label, addresses, service, dst_port, start_time, agent_id, attack_probability,
    status), None for normal verdicts; the incidents are created or updated on connection,
    which the caller holds the write lock on. Also returns what changed (if report), per
    incident touched: its state after the write, with "new" (created now) and "added" (alerts it
    got now)."""
    buckets: dict[tuple[str, str, str, str], list[int]] = {}
    for i, row in enumerate(rows):
        if row.label != "attack":
            continue
        category = row.category
        if category == "dos":
            ident = ("dos", "", row.dst_ip, "")
        elif category == "probe":
            ident = ("probe", row.src_ip, "", "")
        elif category == "normal":
            continue
        else:
            ident = (category, row.src_ip, row.dst_ip, row.service)
        bucket = buckets.get(ident)
        if bucket is None:
            buckets[ident] = [i]
        else:
            bucket.append(i)
    assigned: list[int | None] = [None] * len(rows)
    if not buckets:
        return assigned, []
    keys = {ident: incident_key(*ident) for ident in buckets}
    since = min(rows[i].received_at for bucket in buckets.values() for i in bucket) - quiet
    latest = _open(connection, keys, since)
    created: list[tuple[dict[str, Any], list[int]]] = []
    touched: list[tuple[dict[str, Any], list[int]]] = []
    for ident, members in buckets.items():
        current = latest.get(ident)
        for segment in _segments(members, rows, quiet) if len(members) > 1 else (members,):
            first = rows[segment[0]]  # the earliest: segments are in time order
            if current is None or first.received_at - current["last_seen"] > quiet:
                current = _fresh(ident, keys[ident], first)
                created.append((current, segment))
                if len(segment) > 1:
                    _absorb(current, [rows[i] for i in segment[1:]])
            else:
                touched.append((current, segment))
                _absorb(current, [rows[i] for i in segment])
    if created:
        next_id = (connection.execute(select(func.max(incidents.c.id))).scalar() or 0) + 1
        created.sort(key=_began)  # numbered in the order they began
        for number, (state, _) in enumerate(created, next_id):
            state["id"] = number
        values = [_columns(state) for state, _ in created]
        connection.exec_driver_sql(_insert_sql(connection.dialect), values)
    updated = {id(state): state for state, _ in touched if state.get("_stored")}
    if updated:
        connection.execute(_UPDATE, [_update_params(state) for state in updated.values()])
    news: dict[int, dict[str, Any]] = {}
    for state, segment in created + touched:
        number = state["id"]
        if len(segment) == 1:
            assigned[segment[0]] = number
        else:
            for i in segment:
                assigned[i] = number
        if report:
            told = news.setdefault(state["id"], _report(state))
            told["added"] += len(segment)
    return assigned, list(news.values())


_columns = itemgetter(*COLUMNS)


def _began(made: tuple[dict[str, Any], list[int]]) -> float:
    return made[0]["first_seen"]


@lru_cache(maxsize=4)
def _insert_sql(dialect: Any) -> str:
    """The INSERT of incidents, positional, for the driver's executemany (as the alerts')."""
    sql, names = positional_sql(incidents.insert().values(binds(COLUMNS)), dialect)
    assert names == COLUMNS
    return sql


def _open(
    connection: Connection, keys: dict[tuple[str, str, str, str], int], since: float
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """The latest incident of each identity that alerts received from since on may join (read
    with plain SQL: SQLAlchemy's processing of a thousand bound keys was a tenth of a write).
    When fewer incidents are open than identities are asked for (sporadic alerts: each its own
    incident), all the open ones are read, through the index of last_seen, instead of one
    lookup per identity."""
    mark = "?" if connection.dialect.name == "sqlite" else "%s"
    columns = ", ".join(COLUMNS)
    recent = f"SELECT {{}} FROM incidents WHERE last_seen >= {mark}"
    if connection.exec_driver_sql(recent.format("count(*)"), (since,)).scalar() <= len(keys):
        queries = [(recent.format(columns), (since,))]
    else:
        wanted = sorted(set(keys.values()))
        queries = [
            (
                (
                    f"SELECT {columns} FROM incidents WHERE incident_key IN "
                    f"({', '.join([mark] * len(chunk))}) AND last_seen >= {mark}"
                ),
                (*chunk, since),
            )
            for chunk in (wanted[i : i + 1000] for i in range(0, len(wanted), 1000))
        ]  # within SQLite's limit on bound values
    latest: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for query, parameters in queries:
        for values in connection.exec_driver_sql(query, parameters):
            row = dict(zip(COLUMNS, values, strict=True))
            ident = (row["category"], row["src_ip"], row["dst_ip"], row["service"])
            if ident in keys and (
                ident not in latest or row["last_seen"] > latest[ident]["last_seen"]
            ):
                latest[ident] = row | {"_stored": True}
    return latest


#: What a write changes in a stored incident.
_CHANGED = (
    "first_seen",
    "last_seen",
    "connections",
    "sources",
    "destinations",
    "ports",
    "sources_sketch",
    "destinations_sketch",
    "ports_sketch",
    "agents",
    "peak_rate",
    "rate_second",
    "rate_count",
    "max_probability",
    "new_alerts",
    "escalated_alerts",
    "archived_alerts",
)
_UPDATE = update(incidents).where(incidents.c.id == bindparam("incident")).values(binds(_CHANGED))


def _update_params(state: dict[str, Any]) -> dict[str, Any]:
    return {name: state[name] for name in _CHANGED} | {"incident": state["id"]}


#: What the webhook and the callers are told of an incident.
REPORTED = (
    "id",
    "category",
    "src_ip",
    "dst_ip",
    "service",
    "first_seen",
    "last_seen",
    "connections",
    "sources",
    "destinations",
    "ports",
    "peak_rate",
    "max_probability",
    "agents",
)


_reported = itemgetter(*REPORTED)


def _report(state: dict[str, Any]) -> dict[str, Any]:
    report = dict(zip(REPORTED, _reported(state)))
    report["new"], report["added"] = "_stored" not in state, 0
    return report


def recount(connection: Connection, ids: Iterable[int]) -> None:
    """Count the alerts of these incidents by status again (after a triage action, or after
    retention deleted some of them: their connections too); an incident left with no alert is
    deleted."""
    ids = sorted(set(ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        counts: dict[int, dict[str, int]] = {
            i: dict.fromkeys(STATUS_COLUMNS.values(), 0) for i in chunk
        }
        query = (
            select(alerts.c.incident_id, alerts.c.status, func.count())
            .where(alerts.c.incident_id.in_(chunk))
            .group_by(alerts.c.incident_id, alerts.c.status)
        )
        for incident, status, n in connection.execute(query):
            counts[incident][STATUS_COLUMNS.get(status, "new_alerts")] += n
        stored = {i: sum(values.values()) for i, values in counts.items()}
        if empty := [i for i, n in stored.items() if not n]:
            connection.execute(delete(incidents).where(incidents.c.id.in_(empty)))
        if left := [
            values | {"incident": i, "stored": stored[i]}
            for i, values in counts.items()
            if stored[i]
        ]:
            connection.execute(_RECOUNT, left)


_RECOUNT = (
    update(incidents)
    .where(incidents.c.id == bindparam("incident"))
    .values(binds(STATUS_COLUMNS.values()) | {"connections": bindparam("stored")})
)
