"""Analysts' accounts in a real browser: with accounts in the store the dashboard signs each
analyst in by name (a form, a session cookie), records their actions under that name, takes no
shared token, and sends a page whose session ended to the sign-in form, live refresh included.
Also: a group of alerts sent without endpoints is opened and triaged like any other."""

from __future__ import annotations

import html
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import Engine

from alerts import accounts
from alerts.database import engine_for, migrate
from alerts.store import Classified, Source, Store
from deploy.cluster import certificates
from tests.conftest import ROOT, free_port, run
from tests.serving.conftest import launch_chromium
from tests.test_store import ATTACK, record

PASSWORD = "correct horse battery"


def desy(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "commands", *argv], 120, input=stdin)


@contextmanager
def running_dashboard(
    store: str,
    log: Path,
    *argv: str,
    env: dict | None = None,
    open_files: tuple[int, int] | None = None,
) -> Iterator[str]:
    """A `desy dashboard` process over store (with open_files as its soft and hard limits of
    open files, if given); its URL once it answers."""
    port = free_port()
    tls = "--ssl-certfile" in argv
    limits = ["prlimit", "--nofile={}:{}".format(*open_files), "--"] if open_files else []
    web = subprocess.Popen(
        [*limits, sys.executable, "-m", "commands", "dashboard", "--port", str(port)]
        + ["--store-url", store, *argv],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stderr=log.open("w"),
    )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert web.poll() is None, f"the dashboard exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the dashboard did not answer in 120 s"
            try:
                httpx.get(f"{url}/login", verify=False)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        web.terminate()
        web.wait(10)


def store_with_alice(tmp_path: Path) -> tuple[str, Engine]:
    """A SQLite store with three alert groups (one sent without endpoints) and the analyst
    alice, added with `desy users add`."""
    store = f"sqlite:///{tmp_path}/alerts.db"
    engine = engine_for(store)
    migrate(engine)
    now = time.time()
    Store(engine).write(
        [Classified(now, "3", record(src=src), ATTACK) for src in ("10.9.0.1", "10.9.0.2")]
    )
    hostile = Source("eth0", "/var/log/desy; touch /tmp/pwned")  # what a rogue sensor could say
    Store(engine).write([Classified(now + 1, "3", record(src="10.9.0.1"), ATTACK, hostile)])
    bare = record() | {"src_ip": "", "dst_ip": "", "src_port": 0, "dst_port": 0}
    Store(engine).write([Classified(now, "3", bare, ATTACK)])  # sent without endpoints
    refused = desy("dashboard", "--host", "0.0.0.0", "--store-url", store)
    assert refused.returncode == 2 and "desy users add" in refused.stderr
    added = desy("users", "add", "alice", "--password-stdin", "--store-url", store, stdin=PASSWORD)
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    return store, engine


@pytest.fixture
def dashboard(tmp_path):
    """(dashboard URL, its store's engine) over store_with_alice, a token set too (which
    accounts make void)."""
    store, engine = store_with_alice(tmp_path)
    env = {"DESY_DASHBOARD_TOKEN": "a-shared-token"}
    with running_dashboard(store, tmp_path / "dashboard.log", env=env) as url:
        yield url, engine


def test_analysts_sign_in_with_their_own_accounts(dashboard, tmp_path):
    url, engine = dashboard
    answer = httpx.get(f"{url}/inbox?last=7d")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Finbox%3Flast%3D7d"
    assert httpx.get(f"{url}/inbox", auth=("alice", "a-shared-token")).status_code == 303
    assert httpx.get(f"{url}/inbox", auth=("alice", PASSWORD)).status_code == 303
    page = f"{url}/group?category=dos&src_ip=10.9.0.1&dst_ip=10.0.0.2"
    expired = httpx.post(  # a form sent after the session ended: sign in, then back to its page
        f"{url}/actions", data={"action": "archive", "group": "dos|10.9.0.1|10.0.0.2"},
        headers={"Referer": page},
    )  # fmt: skip
    assert expired.status_code == 303
    assert expired.headers["location"] == "/login?" + urlencode({"next": page[len(url) :]})
    form = {"name": "alice", "password": PASSWORD}
    cross_site = httpx.post(f"{url}/login", data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403 and "set-cookie" not in cross_site.headers
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/inbox?last=7d")
        expect(page).to_have_url(f"{url}/login?next=%2Finbox%3Flast%3D7d")
        page.fill("input[name=name]", "alice")
        page.fill("input[name=password]", "not the password")
        page.click("button")
        expect(page.locator(".error")).to_have_text("Wrong user name or password.")
        log = (tmp_path / "dashboard.log").read_text()
        assert "failed sign-in as 'alice' from 127.0.0.1" in log  # for fail2ban and the like
        page.fill("input[name=password]", PASSWORD)
        page.click("button")
        expect(page).to_have_url(f"{url}/inbox?last=7d")
        expect(page.locator("nav .who")).to_have_text("alice")
        cookie = next(c for c in page.context.cookies() if c["name"] == "desy_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

        page.goto(f"{url}/groups?last=7d")
        page.click("#groups tr[data-group*='10.9.0.1'] a")  # an action, under alice's name
        page.fill("input[name=note]", "our vulnerability scanner")
        page.click("button[value=archive]")
        page.goto(f"{url}/group?category=dos&src_ip=10.9.0.1&dst_ip=10.0.0.2&last=7d")
        expect(page.locator("#history")).to_contain_text("alice")
        expect(page.locator("#history")).to_contain_text("our vulnerability scanner")
        page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)

        page.click("text=Sign out")
        expect(page).to_have_url(f"{url}/login")
        page.goto(f"{url}/agents")
        expect(page).to_have_url(f"{url}/login?next=%2Fagents")
        stale = httpx.get(f"{url}/inbox", cookies={"desy_session": cookie["value"]})
        assert stale.status_code == 303  # signing out ended the session on the server

        page.fill("input[name=name]", "alice")  # the live refresh, once the session ended
        page.fill("input[name=password]", PASSWORD)
        page.click("button")
        expect(page).to_have_url(f"{url}/agents")
        page.goto(f"{url}/groups?last=7d")
        expect(page.locator("#groups tr[data-group]")).to_have_count(2)
        accounts.set_password(engine, "alice", "a new long password")  # ends her sessions
        expect(page).to_have_url(f"{url}/login?next=%2Fgroups%3Flast%3D7d", timeout=15_000)
        browser.close()


def test_a_group_without_addresses_opens_and_is_triaged(dashboard):
    """Records may come without endpoints: their group must not be stuck in the inbox."""
    url, _ = dashboard
    with httpx.Client(base_url=url) as client:
        signed_in = client.post("/login", data={"name": "alice", "password": PASSWORD})
        assert signed_in.status_code == 303
        inbox = client.get("/groups?last=7d").text
        assert 'data-group="dos||"' in inbox and "(no address)" in inbox
        group = client.get("/group?category=dos&src_ip=&dst_ip=&last=7d")
        assert group.status_code == 200 and "10.9.0.1" not in group.text
        done = client.post("/actions", data={"action": "archive", "group": "dos||", "note": "lab"})
        assert done.status_code == 303
        assert 'data-group="dos||"' not in client.get("/groups?last=7d").text
        history = client.get("/group?category=dos&src_ip=&dst_ip=&status=archived&last=7d").text
        assert "alice" in history and "lab" in history
        for bad in ("|10.0.0.1|10.0.0.2", "dos|10.0.0.1", f"dos|{'x' * 46}|", "dos|%00|"):
            answer = client.post("/actions", data={"action": "archive", "group": bad})
            assert answer.status_code == 400, bad


def test_a_flood_of_sign_ins_is_refused_not_queued(dashboard):
    """Password checks run one at a time; past a few waiting, more are refused (429) at once,
    and analysts already signed in are served meanwhile."""
    url, _ = dashboard
    with httpx.Client(base_url=url, timeout=120) as analyst:
        analyst.post("/login", data={"name": "alice", "password": PASSWORD})

        def guess(n: int) -> int:
            form = {"name": "alice", "password": f"guess number {n}"}
            return httpx.post(f"{url}/login", data=form, timeout=120).status_code

        with ThreadPoolExecutor(32) as pool:
            guesses = pool.map(guess, range(32))
            time.sleep(0.5)
            assert analyst.get("/inbox").status_code == 200
            answers = list(guesses)
    assert set(answers) == {401, 429}  # some checked (wrong password), the rest refused


def test_sign_in_over_https_sets_a_secure_cookie(tmp_path):
    store, _ = store_with_alice(tmp_path)
    ca, cert, key = certificates(tmp_path, ("127.0.0.1",))
    tls = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    with (
        running_dashboard(store, tmp_path / "dashboard.log", *tls) as url,
        httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca)) as client,
    ):
        assert url.startswith("https://")
        signed_in = client.post("/login", data={"name": "alice", "password": PASSWORD})
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert client.get("/inbox").status_code == 200


def test_removing_the_last_account_does_not_open_the_dashboard(tmp_path):
    """Beyond loopback the dashboard needs an account or a token for as long as it runs."""
    store, _ = store_with_alice(tmp_path)
    with running_dashboard(store, tmp_path / "dashboard.log", "--host", "0.0.0.0") as url:
        with httpx.Client(base_url=url) as client:
            signed_in = client.post("/login", data={"name": "alice", "password": PASSWORD})
            assert signed_in.status_code == 303
            assert client.get("/inbox").status_code == 200
        removed = desy("users", "remove", "alice", "--store-url", store)
        assert removed.returncode == 0, removed.stderr
        assert desy("users", "list", "--store-url", store).stdout == ""
        for auth in (None, ("mallory", "")):
            answer = httpx.get(f"{url}/inbox", auth=auth)
            assert answer.status_code == 503 and "desy users add" in answer.text
        form = {"reason": "x", "src_cidr": "0.0.0.0/0"}
        assert httpx.post(f"{url}/suppressions", data=form).status_code == 503


def test_the_drill_down_quotes_what_agents_say(dashboard):
    """The pcap-slice command an analyst copies never runs what an agent put in its headers."""
    url, _ = dashboard
    with httpx.Client(base_url=url) as client:
        client.post("/login", data={"name": "alice", "password": PASSWORD})
        page = html.unescape(client.get("/group?category=dos&src_ip=10.9.0.1&dst_ip=10.0.0.2").text)
    quoted = "pcap-slice --log-dir '/var/log/desy; touch /tmp/pwned' --src 10.9.0.1"
    assert page.count(quoted) == 2  # the earlier alert, sent saying nothing: the agent's now
    assert "(the agent's now)" in page
    empty = html.unescape(httpx.get(f"{url}/group?category=dos&src_ip=&dst_ip=").text)
    assert "pcap-slice" not in empty


def test_removing_a_suppression_rule_is_recorded(dashboard):
    url, _ = dashboard
    with httpx.Client(base_url=url) as client:
        client.post("/login", data={"name": "alice", "password": PASSWORD})
        rule = {"reason": "our scanner", "src_cidr": "10.9.0.0/30"}
        assert client.post("/suppressions", data=rule).status_code == 303
        (rule_id,) = re.findall(
            r'action="/suppressions/(\d+)/delete"', client.get("/suppressions").text
        )
        assert client.post(f"/suppressions/{rule_id}/delete").status_code == 303
        assert client.post(f"/suppressions/{rule_id}/delete").status_code == 404
        page = client.get("/suppressions").text
    assert 'class="muted">No rule.' in page
    removed = page[page.index('id="removed-rules"') :]
    assert "our scanner" in removed and removed.count("<td>alice</td>") == 2  # added, removed
