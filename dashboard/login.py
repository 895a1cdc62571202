"""Signing in and out with an analyst's account (a form, then a session cookie), throttled
(dashboard.sign_ins)."""

from __future__ import annotations

import logging
from math import ceil
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import Engine

from alerts import accounts
from alerts.tables import USER_NAME_WIDTH
from dashboard.dependencies import SESSION_COOKIE, AlertStore
from dashboard.inputs import local
from dashboard.rendering import TEMPLATES
from dashboard.sign_ins import SignIns, keys_for, source_of

#: A browser that signed in before: its sign-ins are counted apart (dashboard.sign_ins).
DEVICE_COOKIE = "desy_device"
DEVICE_SECONDS = 90 * 86400
#: The longest password a sign-in may give.
LONGEST_PASSWORD = 1024
log = logging.getLogger("desy.dashboard")
router = APIRouter()


async def _sign_ins(request: Request) -> SignIns:
    return request.app.state.sign_ins


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, engine: AlertStore, then: Annotated[str, Query(alias="next")] = "/inbox"
) -> Response:
    if not accounts.any_users(engine):
        return RedirectResponse(local(then), status_code=303)
    return TEMPLATES.TemplateResponse(request, "login.html", {"next": local(then)})


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    engine: AlertStore,
    sign_ins: Annotated[SignIns, Depends(_sign_ins)],
    name: Annotated[str, Form(max_length=USER_NAME_WIDTH)],
    password: Annotated[str, Form(max_length=LONGEST_PASSWORD)],
    then: Annotated[str, Form(alias="next")] = "/inbox",
) -> Response:
    client = request.client.host if request.client else "?"
    keys = keys_for(name, source_of(client), await _trusted(engine, request, name))
    context = {"next": local(then), "name": name}
    if wait := sign_ins.locked_for(keys):
        log.warning(
            "sign-in as %r from %s refused for %.0f s more (%s; %d refused since start)",
            name, client, wait, sign_ins.said(keys), sign_ins.refused,
        )  # fmt: skip
        context["error"] = f"Too many failed sign-ins: try again in {ceil(wait)} s."
        headers = {"Retry-After": str(ceil(wait))}
        return TEMPLATES.TemplateResponse(request, "login.html", context, 429, headers)
    checked = None
    if accounts.USER_NAME.fullmatch(name):  # else nobody's, and not for the database
        if not sign_ins.enter(keys[-1]):
            return PlainTextResponse("too many sign-ins at once", 429, {"Retry-After": "2"})
        try:
            checked = await anyio.to_thread.run_sync(accounts.check, engine, name, password)
        finally:
            sign_ins.leave(keys[-1])
    session = checked and await anyio.to_thread.run_sync(
        accounts.start_session, engine, name, checked
    )
    if not session:
        sign_ins.failed(keys)
        log.warning("failed sign-in as %r from %s (%s)", name, client, sign_ins.said(keys))
        context["error"] = "Wrong user name or password."
        return TEMPLATES.TemplateResponse(request, "login.html", context, status_code=401)
    sign_ins.succeeded(keys)
    redirect = RedirectResponse(local(then), status_code=303)
    secure = request.url.scheme == "https"
    for cookie, value, seconds in (
        (SESSION_COOKIE, session, accounts.SESSION_SECONDS),
        (DEVICE_COOKIE, f"{name}:{accounts.device_token(name, checked)}", DEVICE_SECONDS),
    ):
        redirect.set_cookie(
            cookie, value, max_age=seconds, httponly=True, samesite="lax", secure=secure
        )
    return redirect


@router.post("/logout")
def logout(request: Request, engine: AlertStore) -> RedirectResponse:
    if value := request.cookies.get(SESSION_COOKIE):
        accounts.end_session(engine, value)
    signed_out = RedirectResponse("/login", status_code=303)
    signed_out.delete_cookie(SESSION_COOKIE)
    return signed_out


async def _trusted(engine: Engine, request: Request, name: str) -> bool:
    """Whether the browser signing in as name has signed in as name before (its device cookie)."""
    device = request.cookies.get(DEVICE_COOKIE, "")
    said, _, token = device.rpartition(":")
    if said != name or not accounts.USER_NAME.fullmatch(name):
        return False
    return await anyio.to_thread.run_sync(accounts.trusted_device, engine, name, token)
