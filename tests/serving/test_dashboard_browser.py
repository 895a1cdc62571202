"""The dashboard in a real browser (Playwright driving Debian's chromium) over the alerts a real
server stored for two real agent runs: grouped inbox, filters, triage with notes and history,
bulk archive, keyboard, a suppression rule taking effect, a new alert showing up live.

Screenshots go to $DESY_SCREENSHOTS (the README's are made that way), else the test's directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from desy.records import record
from tests.agent.helpers import extract_file
from tests.conftest import PCAPS, ROOT, free_port, run
from tests.serving.conftest import launch_chromium, start_server, stop_server, wait_ready

TOKEN = "dashboard-token-42"


def run_agent(server: str, pcap: Path, agent_id: str, log_dir: Path) -> None:
    agent = [sys.executable, "-m", "capture_agent.cli", "run", "--pcap", pcap, "--server", server]
    done = run(
        [*agent, "--agent-id", agent_id, "--log-dir", log_dir],
        300,
        env={**os.environ, "DESY_API_TOKEN": ""},
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def dashboard(model_store, tmp_path):
    """(dashboard URL, model server URL) over one SQLite store filled by two agent runs."""
    uri, _ = model_store
    store = f"sqlite:///{tmp_path}/alerts.db"
    port = free_port()
    server = start_server(uri, None, port, "--store-url", store)
    server_url = f"http://127.0.0.1:{port}"
    web_port = free_port()
    env = {**os.environ, "DESY_DASHBOARD_TOKEN": TOKEN}
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "commands",
            "dashboard",
            "--port",
            str(web_port),
            "--store-url",
            store,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(server_url, server)
        run_agent(server_url, PCAPS / "nmap_80_all.pcap", "sensor-a", tmp_path / "a")
        run_agent(server_url, PCAPS / "masscan_tcp_0_1000.pcap", "sensor-b", tmp_path / "b")
        stop_server(server)  # flushes the store; started again for the live part
        server = start_server(uri, None, port, "--store-url", store)
        wait_ready(server_url, server)
        yield f"http://127.0.0.1:{web_port}", server_url
    finally:
        web.terminate()
        web.wait(10)
        stop_server(server)


def test_an_analyst_triages_alerts_in_the_browser(dashboard, tmp_path):
    url, server_url = dashboard
    shots = Path(os.environ.get("DESY_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        assert httpx.get(f"{url}/groups").status_code == 401  # a token is set: no page without it
        auth = ("alice", TOKEN)
        for bad in ("last=1y", "src=10.0.0.0/33", "min_probability=high", "status=deleted"):
            assert httpx.get(f"{url}/groups?{bad}", auth=auth).status_code == 400, bad
        refused = httpx.post(
            f"{url}/actions", data={"action": "delete", "group": "dos|a|b"}, auth=auth
        )
        assert refused.status_code == 400
        inbox_before = httpx.get(f"{url}/groups", auth=auth).text
        assert inbox_before.count("data-group=") >= 2
        bad_group = {"action": "archive", "group": "dos-and-more|10.0.0.1|10.0.0.2"}
        assert httpx.post(f"{url}/actions", data=bad_group, auth=auth).status_code == 400
        everything = {
            "action": "archive",
            "group": re.findall(r'data-group="([^"]+)"', inbox_before),
        }
        for cross_site in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            for path, form in (
                ("/actions", everything),
                ("/suppressions", {"reason": "x", "src_cidr": "0.0.0.0/0"}),
            ):
                answer = httpx.post(f"{url}{path}", data=form, auth=auth, headers=cross_site)
                assert answer.status_code == 403, (path, cross_site)
        assert httpx.get(f"{url}/groups", auth=auth).text.count(
            "data-group="
        ) == inbox_before.count("data-group=")
        assert "0.0.0.0/0" not in httpx.get(f"{url}/suppressions", auth=auth).text
        # "all" stays "all" in the links, the live updates and the actions of the page
        assert "since=0.0" in httpx.get(f"{url}/groups?last=all", auth=auth).text
        page = browser.new_page(
            http_credentials={"username": "alice", "password": TOKEN},
            viewport={"width": 1400, "height": 900},
        )
        page.goto(f"{url}/groups")
        rows = page.locator("#groups tr[data-group]")
        expect(rows.first).to_be_visible()
        groups = rows.count()
        agents = set(page.locator("#groups td:nth-child(10)").all_inner_texts())
        assert groups >= 2 and {"sensor-a", "sensor-b"} <= {
            a for text in agents for a in text.split(",")
        }
        page.screenshot(path=str(shots / "inbox.png"), full_page=True)

        page.fill(
            "input[name=agent]", "sensor-a"
        )  # filter by agent and source CIDR: a shareable URL
        page.fill("input[name=src]", "10.87.0.0/16")
        page.click("form.filters button")
        expect(page).to_have_url(re.compile(r"(?=.*agent=sensor-a)(?=.*src=10.87.0.0%2F16)"))
        filtered = page.locator("#groups tr[data-group]")
        expect(filtered.first).to_be_visible()
        assert set(page.locator("#groups td:nth-child(10)").all_inner_texts()) == {"sensor-a"}

        first = filtered.first.get_attribute("data-group")  # escalate one group with a note
        page.check(f"input[name=group][value='{first}']")
        page.fill("#note", "scan of the web server, ticket 1234")
        page.click("button[value=escalate]")
        expect(page.locator(f"#groups tr[data-group='{first}']")).to_have_count(0)
        page.goto(f"{url}/groups?status=escalated")
        expect(page.locator(f"#groups tr[data-group='{first}']")).to_have_count(1)
        page.click(
            f"#groups tr[data-group='{first}'] a"
        )  # drill-down: connections, features, history
        expect(page.locator("#history")).to_contain_text("alice")
        expect(page.locator("#history")).to_contain_text("ticket 1234")
        page.locator("#connections details").first.click()
        expect(page.locator("#connections details").first).to_contain_text(
            "dst_host_srv_rerror_rate"
        )
        # where it came from: the agent said its pcap and log directory, pcap-slice takes them
        expect(page.locator("#connections details").first).to_contain_text("nmap_80_all.pcap")
        expect(page.locator("#connections details").first).to_contain_text(
            f"pcap-slice --log-dir {tmp_path / 'a'}"
        )
        page.screenshot(path=str(shots / "drill-down.png"), full_page=True)

        page.goto(f"{url}/groups")  # keyboard: j focuses the first group, e escalates it
        before = page.locator("#groups tr[data-group]").count()
        page.keyboard.press("j")
        page.keyboard.press("e")
        expect(page.locator("#groups tr[data-group]")).to_have_count(before - 1)

        page.check("#all")  # bulk archive of everything left
        page.click("button[value=archive]")
        expect(page.locator("#groups tr[data-group]")).to_have_count(0)

        page.goto(
            f"{url}/suppressions"
        )  # a rule: new alerts from 10.66.0.0/16 are archived on arrival
        page.fill("input[name=src_cidr]", "10.66.0.0/16")
        page.fill("input[name=reason]", "the red team's range")
        page.click("text=Add rule")
        expect(page.locator("#rules")).to_contain_text("the red team's range")

        page.goto(f"{url}/groups")  # live: alerts sent now appear without a reload
        page.wait_for_timeout(6000)  # the server reloads rules every 5 s
        flood = [
            record(tuple(r.values()), "sensor-c")
            for r in extract_file(PCAPS / "synflood_spoofed.pcap")[0][:300]
        ]
        suppressed = [dict(f, src_ip="10.66.1.2") for f in flood[:100]]
        answer = httpx.post(
            f"{server_url}/classify", json={"flows": flood + suppressed}, timeout=60
        )
        assert answer.status_code == 200
        expect(page.locator("#groups tr[data-group]").first).to_be_visible(timeout=20_000)
        sources = set(page.locator("#groups td:nth-child(3)").all_inner_texts())
        assert sources and "10.66.1.2" not in sources

        page.keyboard.press("j")  # the focus stays on its group when a live refresh moves it
        focused = page.locator("#groups tr.focus").get_attribute("data-group")
        newer = [dict(f, src_ip="10.77.1.2") for f in flood[:1]]
        assert httpx.post(f"{server_url}/classify", json={"flows": newer}).status_code == 200
        expect(page.locator("#groups tr[data-group*='|10.77.1.2|']")).to_have_count(
            1, timeout=20_000
        )
        expect(page.locator("#groups tr.focus")).to_have_attribute("data-group", focused)
        page.keyboard.press("e")
        expect(page.locator(f"#groups tr[data-group='{focused}']")).to_have_count(0)
        expect(page.locator("#groups tr[data-group*='|10.77.1.2|']")).to_have_count(1)

        page.goto(f"{url}/groups?status=archived&src=10.66.1.2")
        expect(page.locator("#groups tr[data-group]").first).to_be_visible()

        page.goto(f"{url}/overview?status=any")
        expect(page.locator("#chart svg")).to_be_visible()
        expect(page.locator("#top-sources")).to_contain_text("10.66.1.2")
        page.screenshot(path=str(shots / "overview.png"), full_page=True)
        page.goto(f"{url}/agents")
        expect(page.locator("#agents")).to_contain_text("sensor-b")
        expect(page.locator("#agents")).to_contain_text("masscan_tcp_0_1000.pcap")
        browser.close()
