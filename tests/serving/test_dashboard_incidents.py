"""Incidents in a real browser (Playwright driving Debian's chromium) over a store holding the
connections of a real spoofed SYN flood (../shared/pcaps/synflood_spoofed.pcap: 37,669 connections
from 37,623 sources) and of an nmap scan: the inbox shows two rows, the flood against its victim
and the scan from its source; one action archives the whole flood; ticking groups of an incident
acts on them alone; the overview counts the incidents and leaves the spoofed sources out of its
top sources.

Screenshots go to $DESY_SCREENSHOTS, else the test's directory."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright
from sqlalchemy import func, select

from alerts.database import engine_for, migrate
from alerts.store import Classified, Store
from alerts.tables import alerts
from desy.records import record
from tests.agent.helpers import extract_file
from tests.conftest import PCAPS
from tests.serving.conftest import launch_chromium
from tests.serving.test_dashboard_accounts import running_dashboard

DOS = {"label": "attack", "attack_probability": 0.97, "category": "dos"}
PROBE = {"label": "attack", "attack_probability": 0.88, "category": "probe"}
VICTIM, SCANNER = "10.10.10.10", "10.87.1.10"


def fill(url: str) -> tuple[int, int]:
    """The flood's connections as sensor-a sent them (2,000 a request over a minute), then the
    scan's from sensor-b; how many of each."""
    engine = engine_for(url)
    migrate(engine)
    store = Store(engine)
    flood = extract_file(PCAPS / "synflood_spoofed.pcap")[0]
    scan = [r for r in extract_file(PCAPS / "nmap_80_all.pcap")[0] if r["src_ip"] == SCANNER]
    now = time.time()
    for start in range(0, len(flood), 2000):
        sent = flood[start : start + 2000]
        at = now - 120 + start / 1000
        store.write([Classified(at, "6", record(tuple(r.values()), "sensor-a"), DOS) for r in sent])
    store.write([Classified(now, "6", record(tuple(r.values()), "sensor-b"), PROBE) for r in scan])
    engine.dispose()
    return len(flood), len(scan)


def test_a_flood_and_a_scan_are_two_incidents_and_one_action_archives_the_flood(tmp_path):
    store = f"sqlite:///{tmp_path}/alerts.db"
    flooded, scanned = fill(store)
    assert flooded > 30_000 and scanned > 10
    shots = Path(os.environ.get("DESY_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with (
        running_dashboard(store, tmp_path / "dashboard.log") as url,
        sync_playwright() as p,
    ):
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/inbox")
        rows = page.locator("#incidents tr[data-incident]")
        expect(rows).to_have_count(2)  # not 37,623 groups of one alert each
        scan, flood = rows.nth(0), rows.nth(1)  # the last seen first
        expect(scan.locator("td").nth(2)).to_have_text(f"from {SCANNER}")
        expect(flood.locator("td").nth(2)).to_have_text(f"against {VICTIM}")
        flood_cells = flood.locator("td").all_inner_texts()
        assert flood_cells[1] == "dos" and flood_cells[3] == str(flooded)
        sources = flood_cells[4]
        assert sources.startswith("≈") and abs(int(sources[1:]) - 37_623) < 0.1 * 37_623
        assert flood_cells[5:7] == ["1", "1"]  # one destination, one port
        assert int(flood_cells[9]) > 100 and flood_cells[11] == "sensor-a"  # peak conn/s, agents
        scan_cells = scan.locator("td").all_inner_texts()
        assert (
            scan_cells[3] == str(scanned)
            and int(scan_cells[6]) > 1
            and scan_cells[11] == "sensor-b"
        )
        page.screenshot(path=str(shots / "incidents.png"), full_page=True)

        flood.locator("a").click()  # drill-down: the flood's groups and connections
        expect(page.locator("#summary")).to_contain_text(f"{flooded} ({flooded} new")
        expect(page.locator("#groups tbody tr")).to_have_count(200)  # the largest 200 groups
        expect(page.locator("#timeline svg")).to_have_count(1)  # its alerts over time
        expect(page.locator("#connections tbody tr").first).to_contain_text(f"→ {VICTIM}:")
        page.screenshot(path=str(shots / "incident.png"))  # its first screen

        page.click("#suppress")  # a rule like the incident: its victim, prefilled
        expect(page.locator("input[name=dst_cidr]")).to_have_value(f"{VICTIM}/32")
        expect(page.locator("select[name=category]")).to_have_value("dos")
        expect(page.locator("input[name=src_cidr]")).to_have_value("")

        page.goto(f"{url}/inbox")  # one action archives the whole flood
        page.check(f"#incidents tr[data-incident='{flood.get_attribute('data-incident')}'] input")
        page.fill("#note", "SYN flood, upstream filtering asked")
        page.click("button[value=archive]")
        expect(page.locator("#incidents tr[data-incident]")).to_have_count(1)
        page.goto(f"{url}/inbox?status=archived")
        archived = page.locator("#incidents tr[data-incident]")
        expect(archived).to_have_count(1)
        expect(archived.first.locator("td").nth(2)).to_have_text(f"against {VICTIM}")
        archived.first.locator("a").click()
        expect(page.locator("#summary")).to_contain_text(f"0 new, 0 escalated, {flooded} archived")
        history = page.locator("#history tbody tr")
        expect(history).to_have_count(1)
        expect(history.first).to_contain_text("archive")
        expect(history.first).to_contain_text(str(flooded))
        expect(history.first).to_contain_text("upstream filtering asked")

        page.goto(f"{url}/inbox")  # a selection of an incident's groups: only theirs
        page.locator("#incidents tr[data-incident] a").first.click()
        first_group = page.locator("#groups tbody tr").first
        in_group = int(first_group.locator("td").nth(3).inner_text())
        first_group.locator("input").check()
        page.click("button[value=escalate]")
        expect(page.locator("#summary")).to_contain_text(
            f"{scanned} ({scanned - in_group} new, {in_group} escalated, 0 archived)"
        )
        expect(page.locator("#history tbody tr").first).to_contain_text(f"{SCANNER} →")

        for bad, code in (("x", 400), ("-1", 400), ("9" * 30, 400), ("99999", 404)):
            assert page.request.get(f"{url}/incident?id={bad}").status == code, bad

        page.goto(f"{url}/overview?last=all")
        expect(page.locator("#incident-count")).to_contain_text("2 incidents")
        expect(page.locator("#spoofed")).to_contain_text(VICTIM)
        top = page.locator("#top-sources tbody tr")
        expect(top.first).to_contain_text(SCANNER)  # the flood's sources sent 1 or 2 each
        assert all(
            int(n) >= 5
            for n in re.findall(r"\t(\d+)$", "\n".join(top.all_inner_texts()), re.MULTILINE)
        )
        page.screenshot(path=str(shots / "overview-incidents.png"), full_page=True)
        browser.close()
    engine = engine_for(store)
    with engine.connect() as connection:
        left = connection.execute(
            select(func.count()).where(alerts.c.category == "dos", alerts.c.status != "archived")
        ).scalar_one()
    assert left == 0  # every connection of the flood
