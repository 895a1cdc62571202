"""What analysts send, checked: filters from query parameters, text fields, where to go next.
A bad value is a BadQuery (a 400 that says why)."""

from __future__ import annotations

import time
import unicodedata
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Query

from alerts.filters import BadQuery, Filters
from desy.records import TEXT_WIDTHS

#: Time ranges the filters offer (seconds back from now; 0: everything).
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": 0}
DEFAULT_RANGE = "24h"


def plain(name: str, value: str | None, limit: int) -> str | None:
    """A text field as given; BadQuery if longer than the store keeps or with a control
    character (a NUL byte, which no database stores, and the like: no analyst types them)."""
    if value and len(value) > limit:
        raise BadQuery(f"{name} must be at most {limit} characters")
    if value and any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in value):
        raise BadQuery(f"{name} must not hold control characters")
    return value


def filters_from(
    status: str = "new",
    since: str | None = None,
    until: str | None = None,
    agent: str | None = None,
    category: str | None = None,
    src: str | None = None,
    dst: str | None = None,
    service: str | None = None,
    min_probability: Annotated[str | None, Query()] = None,
    last: str = DEFAULT_RANGE,
) -> Filters:
    """Filters from query parameters (empty ones ignored); BadQuery for a bad value. Without an
    explicit `since`, alerts of the `last` hour, day (the default), week, month, or all."""
    if last not in RANGES:
        raise BadQuery(f"last must be one of {', '.join(RANGES)}, not {last!r}")
    if not since:  # as a number, so that links and live updates keep the range (0: all)
        since = str(time.time() - RANGES[last] if RANGES[last] else 0)

    def number(name: str, text: str | None) -> float | None:
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise BadQuery(f"{name} must be a number, not {text!r}") from None

    return Filters(
        status=status or "new",
        since=number("since", since),
        until=number("until", until),
        agent=plain("agent", agent, TEXT_WIDTHS["agent_id"]) or None,
        category=category or None,
        src=src or None,
        dst=dst or None,
        service=plain("service", service, TEXT_WIDTHS["service"]) or None,
        min_probability=number("min_probability", min_probability),
    )


def filters_in(query: str) -> Filters:
    """The filters a page's query string holds (a form sends it back with an action)."""
    allowed = set(Filters.__dataclass_fields__)
    return filters_from(**{k: v for k, v in parse_qsl(query) if k in allowed})


def local(url: str) -> str:
    """Only redirect within the dashboard."""
    return url if url.startswith("/") and not url.startswith("//") else "/inbox"
