"""Whatever a store holds, a real dashboard over it (SQLite and PostgreSQL) renders it and its
analysts triage it: times no calendar holds (older servers took any number), addresses that
are no address (an IPv6 scope id holding a "|": Python's parser took it)."""

from __future__ import annotations

import html
import re
import time

import httpx
from sqlalchemy import update

from alerts.database import engine_for, migrate
from alerts.groups import group_key
from alerts.store import Classified, Store
from alerts.tables import alerts
from tests.serving.test_dashboard_accounts import running_dashboard
from tests.test_store import ATTACK, record

ODD_SOURCE = "fe80::1%a|b"


def odd_store(url: str) -> None:
    """An attacker's group of 3 connections, one of them stamped 1e17; a group from ODD_SOURCE."""
    engine = engine_for(url)
    migrate(engine)
    now = time.time()
    Store(engine).write(
        [Classified(now - i, "3", record(src="10.9.0.1"), ATTACK) for i in range(3)]
        + [Classified(now, "3", record(src="10.9.0.7"), ATTACK)]
    )
    with engine.begin() as connection:  # as older servers stored them
        first = connection.scalar(alerts.select().with_only_columns(alerts.c.id).limit(1))
        connection.execute(
            update(alerts).where(alerts.c.id == first).values(start_time=1e17, end_time=1e300)
        )
        connection.execute(
            update(alerts)
            .where(alerts.c.src_ip == "10.9.0.7")
            .values(
                src_ip=ODD_SOURCE, src_key=None, group_key=group_key("dos", ODD_SOURCE, "10.0.0.2")
            )
        )
    engine.dispose()


def groups(client: httpx.Client, status: str = "new") -> list[str]:
    page = client.get(f"/groups?last=all&status={status}")
    assert page.status_code == 200, page.text
    return [html.unescape(value) for value in re.findall(r'data-group="([^"]*)"', page.text)]


def test_odd_stored_values_render_and_are_triaged(store_url, tmp_path):
    odd_store(store_url)
    with (
        running_dashboard(store_url, tmp_path / "dashboard.log") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        found = groups(client)
        assert len(found) == 2
        attacker = client.get("/group?category=dos&src_ip=10.9.0.1&dst_ip=10.0.0.2&last=all")
        assert attacker.status_code == 200, attacker.text
        assert attacker.text.count("<td>new</td>") == 3  # every connection, the odd one too
        assert "1e+17 – 1e+300" in attacker.text
        odd = client.get(
            "/group",
            params={"category": "dos", "src_ip": ODD_SOURCE, "dst_ip": "10.0.0.2", "last": "all"},
        )
        assert odd.status_code == 200, odd.text
        assert html.escape(ODD_SOURCE) in odd.text and "<td>new</td>" in odd.text
        for page in ("/overview?last=all", "/agents", "/suppressions"):
            assert client.get(page).status_code == 200, page

        (odd_value,) = (value for value in found if "fe80" in value)
        note = {"action": "escalate", "group": odd_value, "note": "scoped address"}
        assert client.post("/actions", data=note).status_code == 303
        assert groups(client, "escalated") == [odd_value]
        bulk = {"action": "archive", "group": groups(client, "any"), "query": "status=any&last=all"}
        assert client.post("/actions", data=bulk).status_code == 303  # both groups at once
        assert groups(client) == [] and len(groups(client, "archived")) == 2
        odd = client.get(
            "/group",
            params={
                "category": "dos",
                "src_ip": ODD_SOURCE,
                "dst_ip": "10.0.0.2",
                "status": "archived",
                "last": "all",
            },
        )
        assert "scoped address" in odd.text and odd.text.count("<td>archived</td>") == 1
