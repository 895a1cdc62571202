"""Analysts' accounts in a real browser: with accounts in the store the dashboard signs each
analyst in by name (a form, a session cookie), records their actions under that name, takes no
shared token, and sends a page whose session ended to the sign-in form, live refresh included.
Also: a group of alerts sent without endpoints is opened and triaged like any other."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from alerts import accounts
from alerts.store import Classified, Store, engine_for, migrate
from tests.conftest import ROOT, free_port, run
from tests.serving.conftest import launch_chromium
from tests.test_store import ATTACK, record

PASSWORD = "correct horse battery"


def desy(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "desy.cli", *argv], 120, input=stdin)


@pytest.fixture
def dashboard(tmp_path):
    """(dashboard URL, its store's engine): two alert groups, the analyst alice, a token set
    too (which accounts make void)."""
    store = f"sqlite:///{tmp_path}/alerts.db"
    engine = engine_for(store)
    migrate(engine)
    now = time.time()
    Store(engine).write(
        [Classified(now, "3", record(src=src), ATTACK) for src in ("10.9.0.1", "10.9.0.2")]
    )
    bare = record() | {"src_ip": "", "dst_ip": "", "src_port": 0, "dst_port": 0}
    Store(engine).write([Classified(now, "3", bare, ATTACK)])  # sent without endpoints
    refused = desy("dashboard", "--host", "0.0.0.0", "--store-url", store)
    assert refused.returncode == 2 and "desy users add" in refused.stderr
    added = desy("users", "add", "alice", "--password-stdin", "--store-url", store, stdin=PASSWORD)
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "desy.cli", "dashboard", "--port", str(port), "--store-url", store],
        cwd=ROOT,
        env={**os.environ, "DESY_DASHBOARD_TOKEN": "a-shared-token"},
        stderr=(tmp_path / "dashboard.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/login")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url, engine
    finally:
        web.terminate()
        web.wait(10)


def test_analysts_sign_in_with_their_own_accounts(dashboard, tmp_path):
    url, engine = dashboard
    answer = httpx.get(f"{url}/inbox?last=7d")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Finbox%3Flast%3D7d"
    assert httpx.get(f"{url}/inbox", auth=("alice", "a-shared-token")).status_code == 303
    assert httpx.get(f"{url}/inbox", auth=("alice", PASSWORD)).status_code == 303
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
        page.goto(f"{url}/inbox?last=7d")
        expect(page.locator("#groups tr[data-group]")).to_have_count(2)
        accounts.set_password(engine, "alice", "a new long password")  # ends her sessions
        expect(page).to_have_url(f"{url}/login?next=%2Finbox%3Flast%3D7d", timeout=15_000)
        browser.close()


def test_a_group_without_addresses_opens_and_is_triaged(dashboard):
    """Records may come without endpoints: their group must not be stuck in the inbox."""
    url, _ = dashboard
    with httpx.Client(base_url=url) as client:
        signed_in = client.post("/login", data={"name": "alice", "password": PASSWORD})
        assert signed_in.status_code == 303
        inbox = client.get("/inbox?last=7d").text
        assert 'data-group="dos||"' in inbox and "(no address)" in inbox
        group = client.get("/group?category=dos&src_ip=&dst_ip=&last=7d")
        assert group.status_code == 200 and "10.9.0.1" not in group.text
        done = client.post("/actions", data={"action": "archive", "group": "dos||", "note": "lab"})
        assert done.status_code == 303
        assert 'data-group="dos||"' not in client.get("/inbox?last=7d").text
        history = client.get("/group?category=dos&src_ip=&dst_ip=&status=archived&last=7d").text
        assert "alice" in history and "lab" in history
        for bad in ("|10.0.0.1|10.0.0.2", "dos|10.0.0.1", "dos|not-an-ip|"):
            answer = client.post("/actions", data={"action": "archive", "group": bad})
            assert answer.status_code == 400, bad
