"""Analysts' accounts in a real browser: with accounts in the store the dashboard signs each
analyst in by name (a form, a session cookie), records their actions under that name, takes no
shared token, and sends a page whose session ended to the sign-in form, live refresh included."""

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
        stderr=subprocess.PIPE,
        text=True,
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
        _, errors = web.communicate(timeout=10)
    assert "failed sign-in as 'alice'" in errors  # for fail2ban and the like


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
        expect(page.locator("#groups tr[data-group]")).to_have_count(1)
        accounts.set_password(engine, "alice", "a new long password")  # ends her sessions
        expect(page).to_have_url(f"{url}/login?next=%2Finbox%3Flast%3D7d", timeout=15_000)
        browser.close()
