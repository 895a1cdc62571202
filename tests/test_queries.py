"""What the dashboard asks of the store, on SQLite and a real PostgreSQL: grouping, filters
(CIDR on IPv4 and IPv6), triage with its audit trail, suppression on arrival, overview, agents,
and analysts' verdicts exported for training."""

from __future__ import annotations

import pytest

from alerts import queries, suppression, triage
from alerts.feedback import CATEGORY_LABEL, export
from alerts.filters import BadQuery, Filters
from alerts.groups import GroupKey
from alerts.store import Classified, Store
from desy.schema import LABEL_CATEGORY
from pipelines.prepare import flows
from tests.test_store import ATTACK, ready_store, record

T0 = 1_800_000_000.0


def fill(store) -> None:
    probe = dict(ATTACK, category="probe", attack_probability=0.7)
    store.write(
        [Classified(T0 + i, "6", record("a1", src=f"10.9.0.{i % 3}"), ATTACK) for i in range(30)]
        + [
            Classified(T0 + 50 + i, "6", record("a2", src="2001:db8::7", service="ssh"), probe)
            for i in range(5)
        ]
    )


def test_groups_filters_and_triage(store_url):
    store = ready_store(store_url)
    fill(store)
    engine = store.engine
    groups = queries.inbox(engine, Filters())
    assert len(groups) == 4 and groups[0]["src_ip"] == "2001:db8::7"  # most recently seen first
    assert (
        groups[0]["count"] == 5
        and groups[0]["services"] == "ssh"
        and groups[0]["max_probability"] == 0.7
    )
    assert {g["src_ip"] for g in queries.inbox(engine, Filters(src="10.9.0.0/31"))} == {
        "10.9.0.0",
        "10.9.0.1",
    }
    assert [g["src_ip"] for g in queries.inbox(engine, Filters(src="2001:db8::/32"))] == [
        "2001:db8::7"
    ]
    assert len(queries.inbox(engine, Filters(agent="a1", min_probability=0.8, since=T0 + 10))) == 3
    # the two groups seen last, each counted over all its alerts, not only the newest ones
    assert [
        (g["src_ip"], g["count"], g["first_seen"]) for g in queries.inbox(engine, Filters(), 2)
    ] == [
        ("2001:db8::7", 5, T0 + 50),
        ("10.9.0.2", 10, T0 + 2),
    ]

    key = GroupKey("dos", "10.9.0.1", "10.0.0.2")
    assert triage.act(engine, [key], Filters(), "escalate", "alice", "ticket 7") == 10
    assert [g["src_ip"] for g in queries.inbox(engine, Filters(status="escalated"))] == ["10.9.0.1"]
    assert triage.act(engine, [key], Filters(status="escalated"), "false_positive", "bob") == 10
    assert (
        triage.act(
            engine,
            [GroupKey("dos", "10.9.0.2", "10.0.0.2")],
            Filters(),
            "confirm",
            "bob",
            category="dos",
        )
        == 10
    )
    assert triage.act(engine, [key], Filters(status="any"), "note", "carol", "owner asked") == 0
    history = queries.history(engine, key)
    assert [(h["user"], h["action"], h["alerts"], h["note"]) for h in history] == [
        ("carol", "note", 0, "owner asked"),
        ("bob", "false_positive", 10, ""),
        ("alice", "escalate", 10, "ticket 7"),
    ]
    with pytest.raises(BadQuery):
        triage.act(engine, [key], Filters(), "note", "carol", "  ")
    assert len(queries.inbox(engine, Filters(status="archived"))) == 2
    with pytest.raises(BadQuery):
        triage.act(engine, [key], Filters(), "confirm", "bob", category="normal")
    with pytest.raises(BadQuery):
        triage.act(engine, [], Filters(), "archive", "bob")


def test_bad_filters_are_refused():
    for bad in (
        {"status": "deleted"},
        {"src": "10.0.0.0/33"},
        {"dst": "host"},
        {"category": "worm"},
        {"min_probability": 2.0},
    ):
        with pytest.raises(BadQuery):
            Filters(**bad)


def test_a_suppression_rule_archives_matching_alerts_on_arrival(store_url):
    store = ready_store(store_url)
    rule = suppression.add_suppression(
        store.engine, "carol", "the scanner we run", src_cidr="10.9.0.0/30", service="http"
    )
    fill(store)
    assert {g["src_ip"] for g in queries.inbox(store.engine, Filters())} == {"2001:db8::7"}
    assert len(queries.inbox(store.engine, Filters(status="archived"))) == 3
    assert [r["reason"] for r in suppression.list_suppressions(store.engine)] == [
        "the scanner we run"
    ]
    assert suppression.remove_suppression(store.engine, rule, "dave")
    assert not suppression.remove_suppression(store.engine, rule, "erin")  # out of force already
    (removed,) = suppression.list_suppressions(store.engine)
    assert removed["removed_by"] == "dave" and removed["removed_at"] > 0  # kept, for the record
    Store(store.engine).write([Classified(5.0, "6", record(src="10.9.0.1"), ATTACK)])
    assert "10.9.0.1" in {g["src_ip"] for g in queries.inbox(store.engine, Filters(since=0))}
    with pytest.raises(BadQuery):
        suppression.add_suppression(store.engine, "carol", "", src_cidr="10.0.0.0/8")
    with pytest.raises(BadQuery):
        suppression.add_suppression(store.engine, "carol", "everything")


def test_normal_verdicts_kept_by_store_all_stay_out_of_the_analysts_way(store_url):
    store = ready_store(store_url)
    fill(store)
    normal = {"label": "normal", "attack_probability": 0.02, "category": "normal"}
    batch = [Classified(T0 + 70, "6", record("a1", src="10.5.0.1"), normal)]
    assert store.write(batch, keep_normal=True) == 1
    assert "10.5.0.1" not in {g["src_ip"] for g in queries.inbox(store.engine, Filters())}
    assert [g["src_ip"] for g in queries.inbox(store.engine, Filters(category="normal"))] == [
        "10.5.0.1"
    ]
    summary = queries.overview(store.engine, Filters(status="any"))
    assert sum(n for _, _, n in summary["timeline"]) == 35
    status = {a["agent_id"]: a for a in queries.agent_status(store.engine, now=T0 + 90)}
    assert status["a1"]["alerts_last_hour"] == 30


def test_a_group_must_name_a_category_and_addresses():
    GroupKey("dos", "10.0.0.1", "")  # records without endpoints make groups too
    for bad in (("dos-and-more", "10.0.0.1", "10.0.0.2"), ("dos", "10.0.0.1", "x" * 100)):
        with pytest.raises(BadQuery):
            GroupKey(*bad)


def test_overview_and_agents(store_url):
    store = ready_store(store_url)
    fill(store)
    summary = queries.overview(store.engine, Filters(status="any"))
    assert sum(n for _, _, n in summary["timeline"]) == 35
    assert {c for _, c, _ in summary["timeline"]} == {"dos", "probe"}
    assert summary["sources"][0] == ("10.9.0.0", 10) and summary["services"][0] == ("http", 30)
    everything = queries.overview(store.engine, Filters(status="any", since=0.0))  # last=all
    assert everything["start"] == T0 and everything["step"] == 60.0
    status = {a["agent_id"]: a for a in queries.agent_status(store.engine, now=T0 + 90)}
    assert status["a2"]["model_version"] == "6" and status["a1"]["alerts_last_hour"] == 30
    # 30 flows in the 5 whole minutes and the 30 s of this one the counts cover
    assert status["a1"]["flows_per_second"] == round(30 / 330, 2)


def test_analysts_verdicts_become_training_rows(store_url, tmp_path):
    store = ready_store(store_url)
    fill(store)
    triage.act(
        store.engine, [GroupKey("dos", "10.9.0.0", "10.0.0.2")], Filters(), "false_positive", "bob"
    )
    triage.act(
        store.engine,
        [GroupKey("probe", "2001:db8::7", "10.0.0.2")],
        Filters(),
        "confirm",
        "bob",
        category="probe",
    )
    out = tmp_path / "site" / "feedback.csv"
    assert export(store.engine, out) == 15
    frame = flows([out])  # read exactly as `dvc repro` reads site/*.csv
    assert sorted(frame["category"].value_counts().items()) == [("normal", 10), ("probe", 5)]
    assert set(frame["run"]) == {"a1-2027-01-15", "a2-2027-01-15"} and set(frame["scenario"]) == {
        "analyst"
    }
    assert all(LABEL_CATEGORY[label] == category for category, label in CATEGORY_LABEL.items())


def test_the_inbox_finds_groups_behind_a_flood(store_url):
    """A group seen before a flood of another still makes the inbox: the newest alerts are read
    further back until enough groups are found."""
    store = ready_store(store_url)
    store.write(
        [Classified(T0, "6", record("a1", src="10.9.0.9"), ATTACK)]
        + [Classified(T0 + 1 + i / 100, "6", record("a1"), ATTACK) for i in range(100)]
    )
    groups = queries.inbox(store.engine, Filters(since=T0 - 1), limit=2)
    assert [(g["src_ip"], g["count"]) for g in groups] == [("10.0.0.1", 100), ("10.9.0.9", 1)]
