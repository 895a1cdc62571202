"""The pages analysts read: the inbox of incidents, an incident's groups, connections and
history, the alert groups, a group's connections and history, the overview, the agents."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alerts import queries
from alerts.filters import ATTACK_CATEGORIES, STATUSES, BadQuery, Filters
from alerts.groups import GroupKey
from alerts.triage import ACTIONS
from dashboard.charts import timeline_svg
from dashboard.dependencies import AlertStore, Analyst
from dashboard.inputs import filters_from
from dashboard.origin import origin
from dashboard.rendering import TEMPLATES
from desy.schema import CATEGORIES, FEATURE_NAMES

router = APIRouter()
Filtered = Annotated[Filters, Depends(filters_from)]


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/inbox")


@router.get("/inbox", response_class=HTMLResponse)
def inbox(
    request: Request,
    engine: AlertStore,
    analyst: Analyst,
    filters: Filtered,
    rows_only: bool = False,
) -> Response:
    context = page_context(filters, analyst) | {
        "incidents": queries.incident_inbox(engine, filters)
    }
    return TEMPLATES.TemplateResponse(
        request, "_incidents.html" if rows_only else "incidents.html", context
    )


def page_context(filters: Filters, analyst: str) -> dict[str, Any]:
    """What every filtered page shows besides its own content: the filters, the analyst, the
    vocabularies."""
    return {
        "filters": filters,
        "query": urlencode(filters.as_params()),
        "user": analyst,
        "statuses": STATUSES,
        "categories": CATEGORIES,
        "attack_categories": ATTACK_CATEGORIES,
    }


@router.get("/incident", response_class=HTMLResponse)
def incident(
    request: Request, engine: AlertStore, analyst: Analyst, filters: Filtered, id: str
) -> Response:
    if not (id.isascii() and id.isdigit() and len(id) <= 18):
        raise BadQuery(f"id must be an incident's number, not {id[:30]!r}")
    number = int(id)
    found = queries.incident(engine, number)
    if found is None:
        raise HTTPException(404, f"no incident {number}")
    context = page_context(filters, analyst) | {
        "incident": found,
        "chart": timeline_svg(queries.incident_timeline(engine, found)),
        "groups": queries.incident_groups(engine, number),
        "alerts": queries.incident_alerts(engine, number),
        "history": queries.incident_history(engine, number),
    }
    return TEMPLATES.TemplateResponse(request, "incident.html", context)


@router.get("/groups", response_class=HTMLResponse)
def groups(
    request: Request,
    engine: AlertStore,
    analyst: Analyst,
    filters: Filtered,
    rows_only: bool = False,
) -> Response:
    context = page_context(filters, analyst) | {
        "groups": queries.inbox(engine, filters),
        "actions": ACTIONS,
    }
    return TEMPLATES.TemplateResponse(
        request, "_groups.html" if rows_only else "inbox.html", context
    )


@router.get("/group", response_class=HTMLResponse)
def group(
    request: Request,
    engine: AlertStore,
    analyst: Analyst,
    filters: Filtered,
    key: Annotated[GroupKey, Depends()],
) -> Response:
    alerts = queries.group_alerts(engine, key, filters)
    now = queries.agent_sources(engine, {a["agent_id"] for a in alerts})
    for alert in alerts:
        alert["origin"] = origin(alert, now.get(alert["agent_id"], {}))
    context = page_context(filters, analyst) | {
        "key": key,
        "alerts": alerts,
        "history": queries.history(engine, key),
        "features": FEATURE_NAMES,
    }
    return TEMPLATES.TemplateResponse(request, "group.html", context)


@router.get("/overview", response_class=HTMLResponse)
def overview(request: Request, engine: AlertStore, analyst: Analyst, filters: Filtered) -> Response:
    if "status" not in request.query_params:  # what was detected, triaged or not
        filters = replace(filters, status="any")
    summary = queries.overview(engine, filters)
    context = page_context(filters, analyst) | {
        "summary": summary,
        "chart": timeline_svg(summary),
    }
    return TEMPLATES.TemplateResponse(request, "overview.html", context)


@router.get("/agents", response_class=HTMLResponse)
def agents(request: Request, engine: AlertStore, analyst: Analyst) -> Response:
    context = {"agents": queries.agent_status(engine), "user": analyst}
    return TEMPLATES.TemplateResponse(request, "agents.html", context)
