"""The dashboard: an inbox of grouped alerts that analysts triage, a group's connections (and
why each verdict) and history, an overview, the agents, suppression rules. Server-rendered
(FastAPI, Jinja2) with htmx for live updates; it reads and updates the alert store (and reads
the models of the MLflow registry, to explain verdicts), so it runs beside `desy serve` or on
another host.

Who may use it: once the store has analysts' accounts (`desy users add`), each signs in with
their own (a form, then a session cookie), and their actions are recorded under that name.
Without accounts but with a token, every page needs HTTP Basic authentication with the token as
password and any user name (the analyst's, as they say). Without either, only this machine's
users reach it (on loopback). Cross-site form posts are refused.

One app over routers: login (signing in), views (the pages analysts read), explanations (why a
verdict), triage (their actions), suppressions (rules); what the routes depend on is in dashboard.dependencies.
"""

from __future__ import annotations

import html
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from alerts.filters import BadQuery
from dashboard import explanations, login, suppressions, triage, views
from dashboard.dependencies import Access, SignInNeeded
from dashboard.rendering import HERE
from dashboard.sign_ins import SignIns


def create_app(
    engine: Engine, token: str | None = None, local_user: str = "local", open_access: bool = True
) -> FastAPI:
    """The dashboard over the store behind engine. Without open_access (it listens beyond
    loopback), pages need an account or the token even if the last account is removed."""
    app = FastAPI(title="DeSy dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.engine = engine
    app.state.access = Access(token, local_user, open_access)
    app.state.sign_ins = SignIns()
    app.add_middleware(SameOriginPosts)
    app.add_exception_handler(BadQuery, bad_query)
    app.add_exception_handler(SignInNeeded, sign_in_needed)
    for routes in (login, views, explanations, triage, suppressions):
        app.include_router(routes.router)
    return app


async def bad_query(request: Request, err: Exception) -> Response:
    return HTMLResponse(f"<p class=error>{html.escape(str(err))}</p>", status_code=400)


async def sign_in_needed(request: Request, _: Exception) -> Response:
    """To the sign-in page, and after it back to the page shown (a live refresh's, a form's)."""
    shown = request.headers.get("hx-current-url")
    if request.method != "GET":
        shown = shown or request.headers.get("referer") or "/inbox"
    here = urlsplit(shown or str(request.url))
    to_login = "/login?" + urlencode({"next": urlunsplit(("", "", *here[2:4], ""))})
    if request.headers.get("hx-request"):  # htmx goes to the sign-in page
        return Response(status_code=401, headers={"HX-Redirect": to_login})
    return RedirectResponse(to_login, status_code=303)


class SameOriginPosts:
    """Refuse (403) a POST another site's page makes the analyst's browser send: the browser
    would attach the Basic credentials (or none are needed on loopback). Browsers say where a
    request comes from in Sec-Fetch-Site, older ones in Origin; clients that send neither (curl,
    scripts) are not browsers and pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _cross_site(scope):
            refusal = PlainTextResponse("cross-site request refused", status_code=403)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _cross_site(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != headers.get("host")
