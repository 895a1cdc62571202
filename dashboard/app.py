"""The dashboard: an inbox of grouped alerts that analysts triage, a group's connections and
history, an overview, the agents, suppression rules. Server-rendered (FastAPI, Jinja2) with htmx
for live updates; it only reads and updates the alert store, so it runs beside `desy serve` or
on another host.

Who may use it: once the store has analysts' accounts (`desy users add`), each signs in with
their own (a form, then a session cookie), and their actions are recorded under that name.
Without accounts but with a token, every page needs HTTP Basic authentication with the token as
password and any user name (the analyst's, as they say). Without either, only this machine's
users reach it (on loopback). Cross-site form posts are refused.
"""

from __future__ import annotations

import html
import io
import logging
import secrets
import shlex
import time
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime
from math import ceil
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio.to_thread
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from alerts import accounts, queries, suppression, triage
from alerts.filters import ATTACK_CATEGORIES, STATUSES, BadQuery, Filters
from alerts.groups import GroupKey, form_value
from alerts.triage import ACTIONS
from dashboard.sign_ins import SignIns, keys_for, source_of
from desy.schema import CATEGORIES, FEATURE_NAMES

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
BASIC = HTTPBasic(auto_error=False)
#: Time ranges the filters offer (seconds back from now; 0: everything).
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": 0}
DEFAULT_RANGE = "24h"
SESSION_COOKIE = "desy_session"
#: A browser that signed in before: its sign-ins are counted apart (dashboard.sign_ins).
DEVICE_COOKIE = "desy_device"
DEVICE_SECONDS = 90 * 86400
log = logging.getLogger("desy.dashboard")


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


TEMPLATES.env.filters |= {"some": _some, "when": _when}
TEMPLATES.env.globals |= {
    "ranges": RANGES,
    "default_range": DEFAULT_RANGE,
    "group_value": form_value,
}


def create_app(
    engine: Engine, token: str | None = None, local_user: str = "local", open_access: bool = True
) -> FastAPI:
    """The dashboard over the store behind engine. Without open_access (it listens beyond
    loopback), pages need an account or the token even if the last account is removed."""
    app = FastAPI(title="DeSy dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    app.state.engine, app.state.token, app.state.local_user = engine, token, local_user
    app.state.open_access = open_access
    app.state.sign_ins = SignIns()
    app.add_middleware(SameOriginPosts)

    @app.exception_handler(BadQuery)
    async def bad_query(request: Request, err: BadQuery) -> Response:
        return HTMLResponse(f"<p class=error>{html.escape(str(err))}</p>", status_code=400)

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, _: SignInNeeded) -> Response:
        # back to the page after signing in: the one shown (a live refresh, a form's page)
        shown = request.headers.get("hx-current-url")
        if request.method != "GET":
            shown = shown or request.headers.get("referer") or "/inbox"
        here = urlsplit(shown or str(request.url))
        to_login = "/login?" + urlencode({"next": urlunsplit(("", "", *here[2:4], ""))})
        if request.headers.get("hx-request"):  # htmx goes to the sign-in page
            return Response(status_code=401, headers={"HX-Redirect": to_login})
        return RedirectResponse(to_login, status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(
        request: Request, then: Annotated[str, Query(alias="next")] = "/inbox"
    ) -> Response:
        if not accounts.any_users(engine):
            return RedirectResponse(_local(then), status_code=303)
        return TEMPLATES.TemplateResponse(request, "login.html", {"next": _local(then)})

    @app.post("/login", response_class=HTMLResponse)
    async def login(
        request: Request,
        name: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        then: Annotated[str, Form(alias="next")] = "/inbox",
    ) -> Response:
        sign_ins: SignIns = app.state.sign_ins
        client = request.client.host if request.client else "?"
        keys = keys_for(name, source_of(client), await _trusted(engine, request, name))
        context = {"next": _local(then), "name": name}
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
        redirect = RedirectResponse(_local(then), status_code=303)
        secure = request.url.scheme == "https"
        for cookie, value, seconds in (
            (SESSION_COOKIE, session, accounts.SESSION_SECONDS),
            (DEVICE_COOKIE, f"{name}:{accounts.device_token(name, checked)}", DEVICE_SECONDS),
        ):
            redirect.set_cookie(
                cookie, value, max_age=seconds, httponly=True, samesite="lax", secure=secure
            )
        return redirect

    @app.post("/logout")
    def logout(request: Request) -> RedirectResponse:
        if value := request.cookies.get(SESSION_COOKIE):
            accounts.end_session(engine, value)
        signed_out = RedirectResponse("/login", status_code=303)
        signed_out.delete_cookie(SESSION_COOKIE)
        return signed_out

    @app.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/inbox")

    @app.get("/inbox", response_class=HTMLResponse)
    def inbox(
        request: Request,
        analyst: Analyst,
        filters: Annotated[Filters, Depends(filters_from)],
        rows_only: bool = False,
    ) -> Response:
        groups = queries.inbox(engine, filters)
        context = {
            "groups": groups,
            "filters": filters,
            "query": urlencode(filters.as_params()),
            "user": analyst,
            "statuses": STATUSES,
            "categories": CATEGORIES,
            "attack_categories": ATTACK_CATEGORIES,
            "actions": ACTIONS,
        }
        return TEMPLATES.TemplateResponse(
            request, "_groups.html" if rows_only else "inbox.html", context
        )

    @app.get("/group", response_class=HTMLResponse)
    def group(
        request: Request,
        analyst: Analyst,
        filters: Annotated[Filters, Depends(filters_from)],
        category: str,
        src_ip: str,
        dst_ip: str,
    ) -> Response:
        key = GroupKey(category, src_ip, dst_ip)
        alerts = queries.group_alerts(engine, key, filters)
        now = queries.agent_sources(engine, {a["agent_id"] for a in alerts})
        for alert in alerts:
            alert["origin"] = origin(alert, now.get(alert["agent_id"], {}))
        context = {
            "key": key,
            "alerts": alerts,
            "filters": filters,
            "history": queries.history(engine, key),
            "features": FEATURE_NAMES,
            "user": analyst,
            "query": urlencode(filters.as_params()),
            "attack_categories": ATTACK_CATEGORIES,
        }
        return TEMPLATES.TemplateResponse(request, "group.html", context)

    @app.post("/actions")
    def act(
        analyst: Analyst,
        action: Annotated[str, Form()],
        group: Annotated[list[str], Form()] = (),
        note: Annotated[str, Form(max_length=2000)] = "",
        category: Annotated[str | None, Form()] = None,
        back: Annotated[str, Form()] = "/inbox",
        query: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        filters = filters_from(**_params(query))
        keys = [GroupKey.from_value(value) for value in group]
        note = plain("note", note.strip(), 2000)
        triage.act(engine, keys, filters, action, analyst, note, category or None)
        return RedirectResponse(_local(back), status_code=303)

    @app.get("/overview", response_class=HTMLResponse)
    def overview(
        request: Request, analyst: Analyst, filters: Annotated[Filters, Depends(filters_from)]
    ) -> Response:
        if "status" not in request.query_params:  # what was detected, triaged or not
            filters = replace(filters, status="any")
        summary = queries.overview(engine, filters)
        context = {
            "summary": summary,
            "chart": timeline_svg(summary),
            "filters": filters,
            "user": analyst,
            "query": urlencode(filters.as_params()),
            "statuses": STATUSES,
            "categories": CATEGORIES,
        }
        return TEMPLATES.TemplateResponse(request, "overview.html", context)

    @app.get("/agents", response_class=HTMLResponse)
    def agents(request: Request, analyst: Analyst) -> Response:
        return TEMPLATES.TemplateResponse(
            request, "agents.html", {"agents": queries.agent_status(engine), "user": analyst}
        )

    @app.get("/suppressions", response_class=HTMLResponse)
    def suppressions(request: Request, analyst: Analyst) -> Response:
        context = {
            "rules": suppression.list_suppressions(engine),
            "user": analyst,
            "categories": CATEGORIES,
        }
        return TEMPLATES.TemplateResponse(request, "suppressions.html", context)

    @app.post("/suppressions")
    def add_suppression(
        analyst: Analyst,
        reason: Annotated[str, Form(max_length=2000)],
        category: Annotated[str, Form()] = "",
        src_cidr: Annotated[str, Form()] = "",
        dst_cidr: Annotated[str, Form()] = "",
        service: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        suppression.add_suppression(
            engine,
            analyst,
            plain("reason", reason, 2000),
            category or None,
            src_cidr.strip() or None,
            dst_cidr.strip() or None,
            plain("service", service.strip(), 64) or None,
        )
        return RedirectResponse("/suppressions", status_code=303)

    @app.post("/suppressions/{rule_id}/delete")
    def remove_suppression(analyst: Analyst, rule_id: int) -> RedirectResponse:
        if not suppression.remove_suppression(engine, rule_id, analyst):
            raise HTTPException(404, f"no suppression rule {rule_id} in force")
        return RedirectResponse("/suppressions", status_code=303)

    return app


async def _trusted(engine: Engine, request: Request, name: str) -> bool:
    """Whether the browser signing in as name has signed in as name before (its device cookie)."""
    device = request.cookies.get(DEVICE_COOKIE, "")
    said, _, token = device.rpartition(":")
    if said != name or not accounts.USER_NAME.fullmatch(name):
        return False
    return await anyio.to_thread.run_sync(accounts.trusted_device, engine, name, token)


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


class SignInNeeded(Exception):
    """The store has accounts and the request is not from a signed-in analyst."""


def current_user(
    request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(BASIC)]
) -> str:
    """The analyst: with accounts, the one a session cookie signs in; else with a token, the user
    name of Basic auth with the token; else (loopback only) anyone on this machine."""
    engine, token = request.app.state.engine, request.app.state.token
    if accounts.any_users(engine):
        value = request.cookies.get(SESSION_COOKIE)
        if value and (name := accounts.session_user(engine, value)):
            return name
        raise SignInNeeded
    name = credentials.username if credentials else None
    if name is not None and (len(name) > 128 or not name.isprintable()):
        raise BadQuery("a user name is at most 128 printable characters")
    if token is None:
        if not request.app.state.open_access:  # the last account was removed
            raise HTTPException(503, "no analysts' accounts left: add one with `desy users add`")
        return name or request.app.state.local_user
    if credentials is None or not secrets.compare_digest(
        credentials.password.encode(), token.encode()
    ):
        raise HTTPException(
            401, "user name and the dashboard token needed", {"WWW-Authenticate": "Basic"}
        )
    return name or "anonymous"


Analyst = Annotated[str, Depends(current_user)]


def plain(name: str, value: str | None, limit: int) -> str | None:
    """A text field as given; BadQuery if longer than the store keeps or with a control
    character (a NUL byte, which no database stores, and the like: no analyst types them)."""
    if value and len(value) > limit:
        raise BadQuery(f"{name} must be at most {limit} characters")
    if value and any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in value):
        raise BadQuery(f"{name} must not hold control characters")
    return value


def origin(alert: dict[str, Any], agent_now: dict[str, Any]) -> dict[str, Any]:
    """Where an alert's connection was captured: what its agent said then (else what it says
    now, flagged), and the shell-quoted `desy-agent pcap-slice` command that cuts its packets
    out on that host (None without endpoints). Agents' words are quoted: never a command."""
    said: dict[str, Any] = {}
    for name in ("capture", "log_dir"):
        said[name] = alert.get(name) or agent_now.get(name) or ""
        said[f"{name}_now"] = bool(said[name]) and not alert.get(name)
    said["slice"] = None
    if alert["src_ip"] and alert["dst_ip"]:
        words = [
            "desy-agent", "pcap-slice", "--log-dir", said["log_dir"] or "LOG_DIR",
            "--src", alert["src_ip"], "--dst", alert["dst_ip"],
            "--src-port", alert["src_port"], "--dst-port", alert["dst_port"],
            "--start", alert["start_time"], "--end", alert["end_time"],
            "-o", f"alert-{alert['id']}.pcap",
        ]  # fmt: skip
        said["slice"] = shlex.join(str(word) for word in words)
    return said


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
        agent=plain("agent", agent, 128) or None,
        category=category or None,
        src=src or None,
        dst=dst or None,
        service=plain("service", service, 64) or None,
        min_probability=number("min_probability", min_probability),
    )


def timeline_svg(summary: dict[str, Any]) -> str:
    """Alerts over time per category, stacked, over the whole time range (empty buckets too), an
    SVG drawn by matplotlib (its object API: pyplot's global state is not safe in a threaded
    server). One filled step outline per category and fixed margins: 240 bars and a tight
    layout took 190 ms of the overview's time, this takes 50."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 2.8), dpi=96)
    figure.subplots_adjust(left=0.09, right=0.98, top=0.96, bottom=0.2)
    axes = figure.subplots()
    counts = {(t, c): n for t, c, n in summary["timeline"]}
    shown = [c for c in (*ATTACK_CATEGORIES, "normal") if any(key[1] == c for key in counts)]
    if counts:
        start, step = summary["start"], summary["step"]
        buckets = [start + i * step for i in range(summary["buckets"])]
        edges = date2num([datetime.fromtimestamp(t, UTC) for t in [*buckets, buckets[-1] + step]])
        bottom = [0] * len(buckets)
        for category in shown:
            top = [b + counts.get((t, category), 0) for b, t in zip(bottom, buckets, strict=True)]
            axes.stairs(top, edges, baseline=bottom, fill=True, label=category)
            bottom = top
        axes.xaxis_date()
        axes.set_xlim(edges[0], edges[-1])
        locator = AutoDateLocator(maxticks=8)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.legend(loc="upper left", fontsize=8)
    axes.set_ylabel("alerts")
    out = io.StringIO()
    figure.savefig(out, format="svg")
    return out.getvalue()


def _params(query: str) -> dict[str, str]:
    allowed = set(Filters.__dataclass_fields__)
    return {k: v for k, v in parse_qsl(query) if k in allowed}


def _local(url: str) -> str:
    """Only redirect within the dashboard."""
    return url if url.startswith("/") and not url.startswith("//") else "/inbox"
