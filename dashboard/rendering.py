"""The dashboard's pages: its Jinja2 templates, and the filters and values they use."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from fastapi.templating import Jinja2Templates

from alerts.groups import FIELDS, form_value
from dashboard.inputs import DEFAULT_RANGE, RANGES

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")


def _some(joined: str | None, shown: int = 6) -> str:
    """The first few of a comma-separated list, and how many more."""
    values = sorted((joined or "").split(","))
    more = f" (+{len(values) - shown})" if len(values) > shown else ""
    return ", ".join(values[:shown]) + more


def _when(seconds: float | None) -> str:
    """Epoch seconds as UTC date and time; one no calendar holds (1e17, NaN) as it is stored."""
    if not seconds:
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return str(seconds)


def _group_params(row: Mapping[str, str]) -> dict[str, str]:
    """The group of a row (an inbox group) as the group page's query parameters."""
    return {name: row[name] for name in FIELDS}


def _group_value(row: Mapping[str, str]) -> str:
    """The group of a row as a form value (alerts.groups.form_value)."""
    return form_value(*(row[name] for name in FIELDS))


TEMPLATES.env.filters |= {
    "some": _some,
    "when": _when,
    "group_params": _group_params,
    "group_value": _group_value,
}
TEMPLATES.env.globals |= {"ranges": RANGES, "default_range": DEFAULT_RANGE}
