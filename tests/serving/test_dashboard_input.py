"""Bad input to a real dashboard over each backend: a clear 4xx and nothing changed, including
what PostgreSQL itself refuses (a NUL byte, a value longer than its column)."""

from __future__ import annotations

import time

import httpx

from alerts.database import engine_for, migrate
from alerts.store import Classified, Store
from tests.serving.test_dashboard_accounts import running_dashboard
from tests.test_store import ATTACK, record

GROUP = "dos|10.0.0.1|10.0.0.2"


def test_bad_text_is_refused_and_changes_nothing(store_url, tmp_path):
    engine = engine_for(store_url)
    migrate(engine)
    Store(engine).write([Classified(time.time(), "3", record(), ATTACK)])
    with (
        running_dashboard(store_url, tmp_path / "dashboard.log") as url,
        httpx.Client(base_url=url) as client,
    ):
        for query in ("agent=a%00b", "service=http%00", f"service={'x' * 65}", "agent=%07"):
            for page in ("/inbox", "/groups", "/overview"):
                answer = client.get(f"{page}?{query}")
                assert answer.status_code == 400 and "characters" in answer.text, (page, query)
        for form in (
            {"action": "archive", "group": GROUP, "note": "nul\x00byte"},
            {"action": "note", "group": GROUP, "note": "bell\x07"},
        ):
            assert client.post("/actions", data=form).status_code == 400
        for form in (
            {"reason": "nul\x00", "src_cidr": "10.0.0.0/8"},
            {"reason": "long service", "service": "s" * 65},
        ):
            assert client.post("/suppressions", data=form).status_code == 400
        for scoped in ("fe80::1%25%00", f"fe80::1%25{'x' * 60}"):  # what no store holds
            assert client.get(f"/group?category=dos&src_ip={scoped}&dst_ip=").status_code == 400
        form = {"action": "note", "group": f"dos|fe80::1%{'x' * 60}|", "note": "x"}
        assert client.post("/actions", data=form).status_code == 400
        rule = {"reason": "scoped", "src_cidr": "fe80::%eth0/64"}
        assert client.post("/suppressions", data=rule).status_code == 400
        group = client.get("/group?category=dos&src_ip=10.0.0.1&dst_ip=10.0.0.2").text
        assert "<td>new</td>" in group and "No action yet" in group
        pasted = {"action": "note", "group": GROUP, "note": "naïve\u00a0café\tok 👍🏽"}
        assert client.post("/actions", data=pasted).status_code == 303  # what analysts paste
        assert 'class="muted">No rule.' in client.get("/suppressions").text
        assert client.get("/groups?agent=a1").text.count("data-group=") == 1
