"""What analysts do to incidents and alert groups: triage actions, each recorded in the audit
trail."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine, insert, select, update

from alerts.database import WRITE_LOCK, one_at_a_time
from alerts.filters import ATTACK_CATEGORIES, BadQuery, Filters
from alerts.groups import GroupKey
from alerts.incidents import recount
from alerts.tables import actions, alerts, incidents

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


def act(
    engine: Engine,
    keys: list[GroupKey],
    filters: Filters,
    action: str,
    user: str,
    note: str = "",
    category: str | None = None,
    incident_ids: list[int] = (),
    within: int | None = None,
) -> int:
    """Apply an action to the alerts of each group that the filters select (with within, only
    the group's alerts in that incident), and to every alert of each incident in incident_ids
    in the filters' status (the other filters are the inbox's view of it, not a part of the
    incident); record each (who, when, note, how many, which incident) in the audit trail, and
    count the incidents' alerts by status again. Returns the number of alerts changed."""
    if action not in ACTIONS:
        raise BadQuery(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    status, verdict = ACTIONS[action]
    if verdict == "?":
        if category not in ATTACK_CATEGORIES:
            raise BadQuery(
                f"confirm needs an attack category ({', '.join(ATTACK_CATEGORIES)}), not {category!r}"
            )
        verdict = category
    if not keys and not incident_ids:
        raise BadQuery("no incident or alert group selected")
    if action == "note" and not note.strip():
        raise BadQuery("a note needs some text")
    values: dict[str, Any] = ({"status": status} if status else {}) | (
        {"analyst_category": verdict} if verdict else {}
    )
    changed, now, touched = 0, time.time(), set(incident_ids)
    record = {"at": now, "user": user, "action": action, "note": note}
    # under the writer's lock: a write reads an incident's counts, then writes them
    with one_at_a_time(engine, WRITE_LOCK) as connection:
        named = {
            row.id: row
            for row in connection.execute(
                select(
                    incidents.c.id, incidents.c.category, incidents.c.src_ip, incidents.c.dst_ip
                ).where(incidents.c.id.in_(sorted(touched)))
            )
        }
        if len(named) < len(touched):
            raise BadQuery(f"no such incident: {min(touched - set(named))}")
        for number, incident in sorted(named.items()):
            selected = [
                alerts.c.incident_id == number,
                *Filters(status=filters.status).conditions(),
            ]
            count = _change(connection, selected, values)
            where = {"category": incident.category, "src_ip": incident.src_ip}
            where |= {"dst_ip": incident.dst_ip, "incident_id": number}
            connection.execute(insert(actions).values(**record, **where, alerts=count))
            changed += count
        for key in keys:
            selected = [key.condition(), *filters.conditions()]
            if within is not None:
                selected.append(alerts.c.incident_id == within)
            elif values:
                found = select(alerts.c.incident_id).where(*selected).distinct()
                touched |= {i for i in connection.execute(found).scalars() if i is not None}
            count = _change(connection, selected, values)
            connection.execute(
                insert(actions).values(**record, **asdict(key), alerts=count, incident_id=within)
            )
            changed += count
        if values:
            recount(connection, touched | ({within} if within is not None else set()))
    return changed


def _change(connection: Any, selected: list[Any], values: dict[str, Any]) -> int:
    """Set values on the alerts selected; how many."""
    if not values:
        return 0
    return connection.execute(update(alerts).where(*selected).values(values)).rowcount
