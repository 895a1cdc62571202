"""Incidents on SQLite and a real PostgreSQL: a spoofed flood is one dos incident against its
victim, a scan one probe incident from its source, a guesser one r2l incident per service; the
quiet period ends one; the counts (distinct sources, destinations, ports, peak rate) and their
bounded state; workers writing the same new flood at once start one incident; the migration puts
stored alerts into incidents."""

from __future__ import annotations

import multiprocessing
import random
from typing import Any

from sqlalchemy import func, select

from alerts.database import engine_for, migrate
from alerts.incidents import Sketch, value_hash
from alerts.store import Batch, Classified, Store, _alert_row, _sqlite_bytes
from alerts.tables import alerts, incidents
from tests.test_store import ATTACK, PROBE, ready_store, record

T0 = 1_800_000_000.0
R2L = {"label": "attack", "attack_probability": 0.61, "category": "r2l"}


def flood(n: int, at: float = T0, victim: str = "10.0.0.2", agent: str = "a1") -> list[Classified]:
    """A SYN flood from n spoofed sources (one connection each, random source ports), 500
    connections starting per second, against victim's port 80."""
    rng = random.Random(n)
    return [
        Classified(
            at,
            "6",
            record(agent, src=f"{rng.randrange(1, 224)}.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
            | {
                "dst_ip": victim,
                "src_port": rng.randrange(1024, 65536),
                "start_time": at + i / 500,
            },
            ATTACK,
        )
        for i in range(n)
    ]


def stored_incidents(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(select(incidents).order_by(incidents.c.id))
        ]


def incident_of_each_alert(store: Store) -> dict[int | None, int]:
    with store.engine.connect() as connection:
        query = select(alerts.c.incident_id, func.count()).group_by(alerts.c.incident_id)
        return dict(connection.execute(query).all())


def test_a_spoofed_flood_is_one_dos_incident_against_its_victim(store_url):
    store = ready_store(store_url)
    rows = flood(900)
    # in several requests, as agents send it, with another victim's flood in between
    store.write_batches([Batch(rows[:300]), Batch(flood(5, victim="10.0.0.3"))])
    store.write_batches([Batch(rows[300:])])
    found = stored_incidents(store)
    assert [(i["category"], i["src_ip"], i["dst_ip"]) for i in found] == [
        ("dos", "", "10.0.0.2"),
        ("dos", "", "10.0.0.3"),
    ]
    flooded = found[0]
    assert flooded["connections"] == 900 and flooded["new_alerts"] == 900
    assert flooded["sources"] == 900  # exact below Sketch.K
    assert (flooded["destinations"], flooded["ports"]) == (1, 1)
    assert flooded["peak_rate"] == 500  # connections starting in one second, across writes
    assert flooded["first_seen"] == flooded["last_seen"] == T0
    assert flooded["agents"] == "a1" and flooded["max_probability"] == 0.93
    assert incident_of_each_alert(store) == {flooded["id"]: 900, found[1]["id"]: 5}


def test_a_scan_is_one_probe_incident_and_guessing_one_per_service(store_url):
    store = ready_store(store_url)
    scan = [
        Classified(T0 + i / 100, "6", record("a2", src="10.9.9.9") | {"dst_ip": f"10.0.1.{i % 20}", "dst_port": i}, PROBE)
        for i in range(1, 301)
    ]  # fmt: skip
    guesses = [
        Classified(T0 + i, "6", record("a1", src="10.7.7.7", service=service), R2L)
        for i, service in enumerate(["ftp", "ftp", "telnet", "ftp"])
    ]
    store.write(scan + guesses)
    found = {
        (i["category"], i["src_ip"], i["dst_ip"], i["service"]): i for i in stored_incidents(store)
    }
    assert set(found) == {
        ("probe", "10.9.9.9", "", ""),
        ("r2l", "10.7.7.7", "10.0.0.2", "ftp"),
        ("r2l", "10.7.7.7", "10.0.0.2", "telnet"),
    }
    scanned = found[("probe", "10.9.9.9", "", "")]
    assert (
        scanned["connections"],
        scanned["sources"],
        scanned["destinations"],
        scanned["ports"],
    ) == (300, 1, 20, 300)
    assert found[("r2l", "10.7.7.7", "10.0.0.2", "ftp")]["connections"] == 3


def test_the_quiet_period_ends_an_incident(store_url):
    store = ready_store(store_url)
    store.write(flood(10, at=T0))
    store.write(flood(10, at=T0 + 800))  # within 15 minutes of the last: the same incident
    store.write(flood(10, at=T0 + 800 + 901))  # quiet for longer: a new one
    # one write spanning a quiet period is cut too, and a shorter period is a setting
    short = Store(store.engine, quiet_seconds=60)
    short.write(flood(4, at=T0 + 5000) + flood(4, at=T0 + 5061) + flood(4, at=T0 + 5100))
    found = stored_incidents(store)
    assert [(i["connections"], i["first_seen"] - T0, i["last_seen"] - T0) for i in found] == [
        (20, 0, 800),
        (10, 1701, 1701),
        (4, 5000, 5000),
        (8, 5061, 5100),
    ]
    assert sorted(incident_of_each_alert(store).values()) == [4, 8, 10, 20]


def test_a_distinct_count_past_its_exact_range_is_estimated_in_bounded_state():
    exact = [value_hash(f"10.0.{i >> 8}.{i & 255}") for i in range(Sketch.K - 1)]
    blob, count = Sketch.add(None, set(exact))
    assert count == Sketch.K - 1
    blob, count = Sketch.add(blob, set(exact[:10]))  # seen already: the same count
    assert count == Sketch.K - 1
    for start in range(Sketch.K, 50_000, 7_000):
        blob, count = Sketch.add(blob, {value_hash(f"v{i}") for i in range(start, start + 7_000)})
    assert len(blob) == 8 * Sketch.K
    assert abs(count - 50_022) / 50_022 < 0.1  # the standard error is 3.1 %


def _write_the_same_flood(url: str, barrier: Any, found: Any) -> None:
    store = Store(engine_for(url), report_incidents=True)
    barrier.wait(60)
    written = store.write_batches([Batch(flood(50))])
    found.put([(i["id"], i["new"]) for i in written.incidents])


def test_workers_writing_the_same_new_flood_at_once_start_one_incident(store_url):
    ready_store(store_url)
    context = multiprocessing.get_context("spawn")
    barrier, found = context.Barrier(3), context.Queue()
    workers = [
        context.Process(target=_write_the_same_flood, args=(store_url, barrier, found))
        for _ in range(3)
    ]
    for process in workers:
        process.start()
    reports = [report for _ in workers for report in found.get(timeout=120)]
    for process in workers:
        process.join(60)
    assert len({incident for incident, _ in reports}) == 1
    assert sorted(new for _, new in reports) == [False, False, True]  # reported new once
    (incident,) = stored_incidents(Store(engine_for(store_url)))
    assert incident["connections"] == 150 and incident["sources"] == 50


def test_the_migration_puts_stored_alerts_into_incidents(store_url):
    engine = engine_for(store_url)
    migrate(engine, "0009")
    stored = (
        flood(40, at=T0)
        + flood(3, at=T0 + 5000)  # the same victim after a quiet period
        + [Classified(T0 + 10, "6", record(src="10.9.9.9") | {"dst_port": p}, PROBE) for p in range(7)]
        + [Classified(T0 + 20, "6", record(), {"label": "normal", "attack_probability": 0.1, "category": "normal"})]
    )  # fmt: skip
    random.Random(3).shuffle(stored)  # stored in any order: they are assigned in time order
    rows = []
    for item in stored:
        row = _alert_row(item)._asdict()
        del row["source_id"]
        rows.append(row)
    with engine.begin() as connection:
        connection.execute(alerts.insert(), rows)
    store = ready_store(store_url)  # upgrades to the latest revision
    found = stored_incidents(store)
    assert [(i["category"], i["connections"], i["sources"], i["ports"], i["first_seen"] - T0) for i in found] == [
        ("dos", 40, 40, 1, 0),
        ("probe", 7, 1, 7, 10),
        ("dos", 3, 3, 1, 5000),
    ]  # fmt: skip
    counted = incident_of_each_alert(store)
    assert counted == {found[0]["id"]: 40, found[1]["id"]: 7, found[2]["id"]: 3, None: 1}
    store.write(flood(2, at=T0 + 5100))  # new alerts join the incident the migration made
    assert stored_incidents(store)[2]["connections"] == 5


def test_the_inbox_lists_incidents_and_one_action_archives_a_whole_one(store_url):
    from alerts import queries, triage
    from alerts.filters import Filters
    from alerts.groups import GroupKey

    store = ready_store(store_url)
    scan = [
        Classified(T0 + 1, "6", record("a2", src="10.9.9.9") | {"dst_ip": f"10.0.1.{i % 3}", "dst_port": i}, PROBE)
        for i in range(30)
    ]  # fmt: skip
    store.write(flood(900, at=T0) + flood(5, at=T0, victim="10.0.0.3") + scan)
    engine = store.engine
    inbox = queries.incident_inbox(engine, Filters(since=0))
    assert [(i["category"], i["src_ip"], i["dst_ip"], i["connections"]) for i in inbox] == [
        ("probe", "10.9.9.9", "", 30),
        ("dos", "", "10.0.0.3", 5),
        ("dos", "", "10.0.0.2", 900),
    ]  # the last seen first, then the newest
    flooded = inbox[2]
    assert (flooded["sources"], flooded["peak_rate"], flooded["agents"]) == (900, 500, "a1")
    # filters: an address range matches what names an incident, or any of a flood's sources
    some_source = flood(900)[17].record["src_ip"]
    assert [i["id"] for i in queries.incident_inbox(engine, Filters(since=0, src=some_source))] == [
        flooded["id"]
    ]
    assert [
        i["category"] for i in queries.incident_inbox(engine, Filters(since=0, agent="a2"))
    ] == ["probe"]
    groups = queries.incident_groups(engine, flooded["id"], limit=1000)
    assert len(groups) == 900 and {g["count"] for g in groups} == {1}  # one per spoofed source

    # one action archives the whole flood: every connection of it, recorded once
    assert (
        triage.act(engine, [], Filters(), "archive", "alice", "flood", incident_ids=[flooded["id"]])
        == 900
    )
    assert flooded["id"] not in [i["id"] for i in queries.incident_inbox(engine, Filters(since=0))]
    archived = queries.incident_inbox(engine, Filters(status="archived", since=0))
    assert [(i["id"], i["archived_alerts"], i["new_alerts"]) for i in archived] == [
        (flooded["id"], 900, 0)
    ]
    with engine.connect() as connection:
        statuses = connection.execute(
            select(alerts.c.status, func.count())
            .where(alerts.c.incident_id == flooded["id"])
            .group_by(alerts.c.status)
        ).all()
    assert statuses == [("archived", 900)]
    history = queries.incident_history(engine, flooded["id"])
    assert [(h["user"], h["action"], h["alerts"], h["note"], h["dst_ip"]) for h in history] == [
        ("alice", "archive", 900, "flood", "10.0.0.2")
    ]
    # a selection of an incident's groups: only their alerts, in the incident's history too
    scan_id = inbox[0]["id"]
    group = GroupKey("probe", "10.9.9.9", "10.0.1.1")
    assert triage.act(engine, [group], Filters(), "escalate", "bob", within=scan_id) == 10
    (scanned,) = [i for i in queries.incident_inbox(engine, Filters(since=0)) if i["id"] == scan_id]
    assert (scanned["new_alerts"], scanned["escalated_alerts"]) == (20, 10)
    assert [h["user"] for h in queries.incident_history(engine, scan_id)] == ["bob"]
    # the flood goes on: its new alerts join the incident and bring it back to the inbox
    store.write(flood(3, at=T0 + 60))
    (back,) = [
        i for i in queries.incident_inbox(engine, Filters(since=0)) if i["id"] == flooded["id"]
    ]
    assert (back["new_alerts"], back["archived_alerts"], back["connections"]) == (3, 900, 903)


def test_the_overview_counts_incidents_and_leaves_spoofed_sources_out_of_the_top(store_url):
    from alerts import queries
    from alerts.filters import Filters

    store = ready_store(store_url)
    guesser = [
        Classified(T0 + i, "6", record(src="10.7.7.7", service="ftp"), R2L) for i in range(8)
    ]
    store.write(flood(600) + guesser)
    summary = queries.overview(store.engine, Filters(status="any", since=0))
    assert (summary["incidents"], summary["incident_alerts"]) == (2, 608)
    assert summary["spoofed_victim"] == "10.0.0.2"
    assert summary["sources"] == [("10.7.7.7", 8)]  # not ten spoofed addresses with one alert each
    # without a spoofed flood, every source counts
    store.write([Classified(T0 + 9000, "6", record(src="10.1.1.1"), ATTACK)])
    later = queries.overview(store.engine, Filters(status="any", since=T0 + 8000))
    assert later["spoofed_victim"] is None and later["sources"] == [("10.1.1.1", 1)]


def test_a_false_positive_incident_is_exported_whole_and_retention_drops_empty_incidents(
    store_url, tmp_path
):
    import csv

    from alerts import triage
    from alerts.feedback import export
    from alerts.filters import Filters

    store = ready_store(store_url)
    store.write(flood(30, at=T0))
    store.write(flood(20, at=T0 + 5000, victim="10.0.0.3"))
    first, _ = stored_incidents(store)
    assert (
        triage.act(
            store.engine, [], Filters(), "false_positive", "carol", incident_ids=[first["id"]]
        )
        == 30
    )
    out = tmp_path / "feedback.csv"
    assert export(store.engine, out) == 30  # every connection of it, labelled normal
    with out.open() as handle:
        assert {row["label"] for row in csv.DictReader(handle)} == {"normal"}
    # retention: the old incident's alerts are kept (an analyst's verdict), so is the incident;
    # the other's go, and the incident with them once it is over
    store.purge(T0 + 6000)
    assert [i["id"] for i in stored_incidents(store)] == [first["id"]]
    assert store.alert_count() == 30


def test_retention_counts_the_incidents_it_takes_alerts_from_again(tmp_path):
    store = ready_store(f"sqlite:///{tmp_path}/alerts.db")
    for minute in range(10):  # one flood going on for 10 minutes: one incident
        store.write(flood(300, at=T0 + 60 * minute))
    store.write(flood(5, at=T0 + 5000, victim="10.0.0.3"))
    going, other = stored_incidents(store)
    assert going["connections"] == going["new_alerts"] == 3000 and other["connections"] == 5
    store.purge(T0 + 300)  # its first five minutes
    going, other = stored_incidents(store)
    assert going["connections"] == going["new_alerts"] == 1500 == store.alert_count() - 5
    assert other["connections"] == 5
    with store.engine.connect() as connection:
        size = _sqlite_bytes(connection)
    deleted = store.shrink(max_bytes=size * 3 // 4)  # the oldest alerts go until it fits
    assert 0 < deleted < 1505
    left = incident_of_each_alert(store)
    kept = stored_incidents(store)
    assert {i["id"]: i["connections"] for i in kept} == left
    assert all(i["new_alerts"] == i["connections"] for i in kept)
    while store.shrink(max_bytes=0):  # every alert: the incidents go with them
        pass
    assert store.alert_count() == 0 and stored_incidents(store) == []


def test_an_incidents_timeline_counts_its_alerts_as_received(tmp_path):
    from alerts.queries import incident, incident_timeline

    store = ready_store(f"sqlite:///{tmp_path}/alerts.db")
    for minute in range(10):  # 300 connections received each minute
        store.write(flood(300, at=T0 + 60 * minute))
    store.write(flood(7, at=T0 + 30, victim="10.0.0.3"))  # another incident meanwhile
    (found, _) = stored_incidents(store)
    timeline = incident_timeline(store.engine, incident(store.engine, found["id"]))
    assert timeline["start"] == T0 and timeline["step"] == 9.0 and timeline["buckets"] == 61
    assert [n for _, _, n in timeline["timeline"]] == [300] * 10
    assert [t for t, _, _ in timeline["timeline"]][:2] == [T0, T0 + 54]  # 60 s is bucket 6
    assert {category for _, category, _ in timeline["timeline"]} == {"dos"}
