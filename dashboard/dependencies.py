"""What the routes depend on, from the app's state (create_app sets it): the alert store's
engine, who may sign in, and the analyst a request comes from."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy import Engine

from alerts import accounts
from alerts.filters import BadQuery
from alerts.tables import USER_WIDTH

BASIC = HTTPBasic(auto_error=False)
SESSION_COOKIE = "desy_session"


@dataclass(frozen=True)
class Access:
    """Who may use the dashboard while the store has no analysts' accounts: with a token, whoever
    gives it (HTTP Basic); without, anyone if open (on loopback), as the user name they give or
    local_user."""

    token: str | None
    local_user: str
    open: bool


class SignInNeeded(Exception):
    """The store has accounts and the request is not from a signed-in analyst."""


async def store_engine(request: Request) -> Engine:
    return request.app.state.engine


async def access(request: Request) -> Access:
    return request.app.state.access


AlertStore = Annotated[Engine, Depends(store_engine)]


def current_user(
    engine: AlertStore,
    settings: Annotated[Access, Depends(access)],
    request: Request,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(BASIC)],
) -> str:
    """The analyst: with accounts, the one a session cookie signs in; else with a token, the user
    name of Basic auth with the token; else (loopback only) anyone on this machine."""
    if accounts.any_users(engine):
        value = request.cookies.get(SESSION_COOKIE)
        if value and (name := accounts.session_user(engine, value)):
            return name
        raise SignInNeeded
    name = credentials.username if credentials else None
    if name is not None and (len(name) > USER_WIDTH or not name.isprintable()):
        raise BadQuery(f"a user name is at most {USER_WIDTH} printable characters")
    if settings.token is None:
        if not settings.open:  # the last account was removed
            raise HTTPException(503, "no analysts' accounts left: add one with `desy users add`")
        return name or settings.local_user
    if credentials is None or not secrets.compare_digest(
        credentials.password.encode(), settings.token.encode()
    ):
        raise HTTPException(
            401, "user name and the dashboard token needed", {"WWW-Authenticate": "Basic"}
        )
    return name or "anonymous"


Analyst = Annotated[str, Depends(current_user)]
