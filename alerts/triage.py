"""What analysts do to alert groups: triage actions, each recorded in the audit trail."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine, insert, update

from alerts.filters import ATTACK_CATEGORIES, BadQuery, Filters
from alerts.groups import GroupKey
from alerts.tables import actions, alerts

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
                    at=now, user=user, action=action, **asdict(key), alerts=count, note=note
                )
            )
            changed += count
    return changed
