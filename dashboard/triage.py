"""Triage: an analyst's action on the incidents or alert groups they chose (alerts.triage)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse

from alerts import triage
from alerts.groups import GroupKey
from alerts.tables import NOTE_WIDTH
from dashboard.dependencies import AlertStore, Analyst
from dashboard.inputs import filters_in, local, plain

router = APIRouter()


@router.post("/actions")
def act(
    engine: AlertStore,
    analyst: Analyst,
    action: Annotated[str, Form()],
    group: Annotated[list[str], Form()] = (),
    incident: Annotated[list[int], Form()] = (),
    within: Annotated[int | None, Form()] = None,
    note: Annotated[str, Form(max_length=NOTE_WIDTH)] = "",
    category: Annotated[str | None, Form()] = None,
    back: Annotated[str, Form()] = "/inbox",
    query: Annotated[str, Form()] = "",
) -> RedirectResponse:
    filters = filters_in(query)
    keys = [GroupKey.from_value(value) for value in group]
    note = plain("note", note.strip(), NOTE_WIDTH)
    triage.act(
        engine, keys, filters, action, analyst, note, category or None, list(incident), within
    )
    return RedirectResponse(local(back), status_code=303)
