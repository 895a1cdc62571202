"""Suppression rules: the list, a new rule, a rule removed (alerts.suppression)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alerts import suppression
from alerts.tables import NOTE_WIDTH
from dashboard.dependencies import AlertStore, Analyst
from dashboard.inputs import plain
from dashboard.rendering import TEMPLATES
from desy.records import TEXT_WIDTHS
from desy.schema import CATEGORIES

router = APIRouter(prefix="/suppressions")


@router.get("", response_class=HTMLResponse)
def rules(request: Request, engine: AlertStore, analyst: Analyst) -> Response:
    context = {
        "rules": suppression.list_suppressions(engine),
        "user": analyst,
        "categories": CATEGORIES,
    }
    return TEMPLATES.TemplateResponse(request, "suppressions.html", context)


@router.post("")
def add(
    engine: AlertStore,
    analyst: Analyst,
    reason: Annotated[str, Form(max_length=NOTE_WIDTH)],
    category: Annotated[str, Form()] = "",
    src_cidr: Annotated[str, Form()] = "",
    dst_cidr: Annotated[str, Form()] = "",
    service: Annotated[str, Form()] = "",
) -> RedirectResponse:
    suppression.add_suppression(
        engine,
        analyst,
        plain("reason", reason, NOTE_WIDTH),
        category or None,
        src_cidr.strip() or None,
        dst_cidr.strip() or None,
        plain("service", service.strip(), TEXT_WIDTHS["service"]) or None,
    )
    return RedirectResponse("/suppressions", status_code=303)


@router.post("/{rule_id}/delete")
def remove(engine: AlertStore, analyst: Analyst, rule_id: int) -> RedirectResponse:
    if not suppression.remove_suppression(engine, rule_id, analyst):
        raise HTTPException(404, f"no suppression rule {rule_id} in force")
    return RedirectResponse("/suppressions", status_code=303)
