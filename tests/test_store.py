"""The alert store on SQLite and on a real PostgreSQL: migration from an empty database, writes,
per-minute counts, retention, several writers at once, and the server's background recorder."""

from __future__ import annotations

import json
import logging
import multiprocessing
import sqlite3
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from alerts.addresses import address_key
from alerts.database import engine_for, migrate
from alerts.filters import Filters
from alerts.groups import GroupKey, group_key
from alerts.queries import agent_sources, group_alerts
from alerts.store import Batch, Classified, Source, Store, _alert_row
from alerts.tables import agents, alerts, batches, sources, verdict_counts
from desy.schema import FEATURE_NAMES
from serving.recorder import NotWritten, QueueFull, Recorder
from tests.conftest import run


def record(agent: str = "a1", src: str = "10.0.0.1", service: str = "http") -> dict:
    features = dict.fromkeys(FEATURE_NAMES, 0)
    features.update(protocol_type="tcp", service=service, flag="S0", src_bytes=12)
    return features | {
        "src_ip": src,
        "src_port": 4000,
        "dst_ip": "10.0.0.2",
        "dst_port": 80,
        "start_time": 1.0,
        "end_time": 2.0,
        "agent_id": agent,
    }


ATTACK = {"label": "attack", "attack_probability": 0.93, "category": "dos"}
PROBE = {"label": "attack", "attack_probability": 0.81, "category": "probe"}
NORMAL = {"label": "normal", "attack_probability": 0.02, "category": "normal"}


def ready_store(url: str) -> Store:
    engine = engine_for(url)
    migrate(engine)
    return Store(engine)


def test_migration_from_an_empty_database_is_repeatable(store_url):
    engine = engine_for(store_url)
    migrate(engine)
    migrate(engine)  # already at the latest revision: nothing to do
    assert {
        "alerts",
        "verdict_counts",
        "agents",
        "actions",
        "suppressions",
        "users",
        "sessions",
        "sources",
        "batches",
        "incidents",
        "desy_store_version",
    } <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM desy_store_version")).scalar_one()
            == "0010"
        )


def _migrate_when_all_are_ready(url: str, barrier: Any) -> None:
    engine = engine_for(url)
    barrier.wait(60)
    migrate(engine)


def test_workers_starting_together_migrate_a_new_store_once(store_url):
    """Every server worker migrates the store at start: on a new store they must not all try
    to create the tables (each would fail but the first)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=_migrate_when_all_are_ready, args=(store_url, barrier))
        for _ in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [process.exitcode for process in workers] == [0] * 4
    assert ready_store(store_url).alert_count() == 0


def test_migration_compacts_stored_alerts(store_url):
    """0004 computes the group key of alerts stored before it (in SQL on PostgreSQL: the same key
    the store gives new alerts, so old and new alerts of a group are found together) and turns
    their features from objects into arrays."""
    engine = engine_for(store_url)
    migrate(engine, "0003")
    old = [("dos", "10.0.0.1", "10.0.0.2"), ("probe", "2001:db8::7", "10.0.0.2")]
    features = {name: record()[name] for name in FEATURE_NAMES}
    row = _alert_row(Classified(1.0, "6", record(), ATTACK))._asdict() | {"features": features}
    del row["group_key"], row["source_id"]
    with engine.begin() as connection:
        for category, src, dst in old:
            connection.execute(
                alerts.insert().values(row | {"category": category, "src_ip": src, "dst_ip": dst})
            )
    store = ready_store(store_url)  # upgrades to the latest revision
    store.write([Classified(1.0, "6", record(src="2001:db8::7"), PROBE)])
    with engine.connect() as connection:
        keys = connection.execute(
            select(alerts.c.category, alerts.c.src_ip, alerts.c.dst_ip, alerts.c.group_key)
        ).all()
    assert len(keys) == 3
    assert all(key == group_key(category, src, dst) for category, src, dst, key in keys)
    probe = group_alerts(engine, GroupKey("probe", "2001:db8::7", "10.0.0.2"), Filters("any"))
    assert [alert["features"] for alert in probe] == [features, features]


def test_attacks_are_stored_and_every_verdict_counted(store_url):
    store = ready_store(store_url)
    at = 1_800_000_000.0
    batch = [
        Classified(at, "5", record("a1"), ATTACK),
        Classified(at + 1, "5", record("a1"), NORMAL),
        Classified(at + 2, "6", record("a2", service="ftp"), ATTACK),
    ]
    assert store.write(batch) == 2
    assert store.alert_count() == 2
    with store.engine.connect() as connection:
        counts = {
            (row.agent_id, row.category): row.flows
            for row in connection.execute(select(verdict_counts))
        }
        seen = {
            row.agent_id: (row.last_seen, row.model_version)
            for row in connection.execute(select(agents))
        }
        stored = connection.execute(
            text("SELECT features, service FROM alerts WHERE agent_id = 'a2'")
        ).one()
    assert counts == {("a1", "dos"): 1, ("a1", "normal"): 1, ("a2", "dos"): 1}
    assert seen == {"a1": (at + 1, "5"), "a2": (at + 2, "6")}
    features = stored[0] if isinstance(stored[0], list) else json.loads(stored[0])
    assert features == [record("a2", service="ftp")[name] for name in FEATURE_NAMES]
    assert stored[1] == "ftp"
    with store.engine.connect() as connection:  # every column, read back through SQLAlchemy
        row = connection.execute(select(alerts).where(alerts.c.agent_id == "a2")).one()._asdict()
    assert row | {"id": 0} == {
        "id": 0, "received_at": at + 2, "agent_id": "a2", "model_version": "6", "label": "attack",
        "category": "dos", "attack_probability": 0.93, "src_ip": "10.0.0.1", "src_port": 4000,
        "dst_ip": "10.0.0.2", "dst_port": 80, "start_time": 1.0, "end_time": 2.0,
        "protocol_type": "tcp", "service": "ftp", "flag": "S0", "features": features,
        "status": "new", "analyst_category": None, "src_key": address_key("10.0.0.1"),
        "dst_key": address_key("10.0.0.2"), "group_key": group_key("dos", "10.0.0.1", "10.0.0.2"),
        "source_id": None, "incident_id": row["incident_id"],
    }  # fmt: skip
    assert row["incident_id"] is not None
    store.write(
        [Classified(at - 100, "4", record("a1"), ATTACK)]
    )  # an older answer does not move last seen back
    assert store.write(batch, keep_normal=True) == 3
    with store.engine.connect() as connection:
        assert (
            connection.execute(
                select(agents.c.last_seen).where(agents.c.agent_id == "a1")
            ).scalar_one()
            == at + 1
        )
        assert connection.execute(select(func.sum(verdict_counts.c.flows))).scalar_one() == 7


def test_agents_keep_where_they_said_they_capture(store_url):
    store = ready_store(store_url)
    here = Source("eth0", "/var/log/desy")
    store.write([Classified(1.0, "5", record("a1"), ATTACK, here)])
    store.write([Classified(2.0, "5", record("a1"), ATTACK)])  # a request that did not say
    assert agent_sources(store.engine, {"a1", "a2"}) == {
        "a1": {"agent_id": "a1", "capture": "eth0", "log_dir": "/var/log/desy"}
    }
    store.write([Classified(3.0, "5", record("a1"), ATTACK, Source("/data/x.pcap", "/tmp/l"))])
    assert agent_sources(store.engine, {"a1"})["a1"]["capture"] == "/data/x.pcap"


def test_each_alert_keeps_where_its_connection_was_captured(store_url):
    """An agent that moves to another capture source: its earlier alerts still say the first."""
    store = ready_store(store_url)
    first, then = Source("eth0", "/var/log/desy"), Source("/data/x.pcap", "/tmp/l")
    store.write([Classified(1.0, "5", record("a1"), ATTACK, first)])
    store.write([Classified(2.0, "5", record("a2"), ATTACK, first)])  # another agent, same names
    store.write([Classified(3.0, "5", record("a1"), ATTACK, then)])
    store.write([Classified(4.0, "5", record("a1"), ATTACK)])  # said nothing
    Store(store.engine).write([Classified(5.0, "5", record("a1"), ATTACK, first)])  # a new worker
    said = [
        (alert["received_at"], alert["agent_id"], alert["capture"], alert["log_dir"])
        for alert in group_alerts(
            store.engine, GroupKey("dos", "10.0.0.1", "10.0.0.2"), Filters("any")
        )
    ]
    assert said == [
        (5.0, "a1", "eth0", "/var/log/desy"),
        (4.0, "a1", None, None),
        (3.0, "a1", "/data/x.pcap", "/tmp/l"),
        (2.0, "a2", "eth0", "/var/log/desy"),
        (1.0, "a1", "eth0", "/var/log/desy"),
    ]
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(sources)) == 3


def test_retention_deletes_old_alerts_and_counts_but_not_analysts_verdicts(store_url):
    store = ready_store(store_url)
    store.write(
        [Classified(1_000.0, "5", record(), ATTACK), Classified(90_000.0, "5", record(), ATTACK)]
        + [Classified(1_000.0, "5", record(src="10.0.0.9"), ATTACK)]
    )
    with store.engine.begin() as connection:  # an analyst said this one was a false positive
        connection.execute(
            alerts.update().where(alerts.c.src_ip == "10.0.0.9").values(analyst_category="normal")
        )
    assert store.purge(older_than=50_000.0) == 1
    assert store.alert_count() == 2
    if store.engine.dialect.name == "sqlite":  # the size limit is SQLite's
        assert store.shrink(max_bytes=0) == 1  # all it may delete; the analyst's verdict stays
        with store.engine.connect() as connection:
            assert connection.execute(select(alerts.c.src_ip)).scalars().all() == ["10.0.0.9"]
    with store.engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(verdict_counts)).scalar_one() == 1
        )


def _writer(url: str, agent: str, batches: int, barrier: Any) -> None:
    store = Store(engine_for(url))
    shared = Source("eth0", "/var/log/desy")  # another agent's, which every writer stores too
    barrier.wait(60)
    for i in range(batches):
        at, mine = 1_800_000_000.0 + i, Source(f"eth{i % 3}", "/var/log/desy")
        batch = [
            Classified(at, "5", record(agent, src=f"10.1.{i % 250}.{n}"), ATTACK, mine)
            for n in range(20)
        ]
        store.write([*batch, Classified(at, "5", record("shared"), ATTACK, shared)])


def test_several_writers_at_once_lose_nothing(store_url):
    store = ready_store(store_url)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    writers = [
        context.Process(target=_writer, args=(store_url, f"agent{k}", 50, barrier))
        for k in range(4)
    ]
    for process in writers:
        process.start()
    try:
        for process in writers:
            process.join(120)
            assert process.exitcode == 0
    finally:
        for process in writers:
            process.kill()
    assert store.alert_count() == 4 * 50 * 21
    with store.engine.connect() as connection:
        assert connection.execute(select(func.sum(verdict_counts.c.flows))).scalar_one() == 4200
        assert connection.execute(select(func.count()).select_from(agents)).scalar_one() == 5
        # each writer's 3 sources, and the shared one that all four stored at the same moment
        assert connection.scalar(select(func.count()).select_from(sources)) == 4 * 3 + 1
        assert not connection.scalar(
            select(func.count()).select_from(alerts).where(alerts.c.source_id.is_(None))
        )


def test_the_recorder_commits_each_batch_before_its_future_is_done(store_url):
    written = []
    recorder = Recorder(Store(engine_for(store_url)), on_written=written.append)
    done = [
        recorder.submit("5", [record(src=f"10.2.0.{i}")] * 10, [ATTACK] * 10) for i in range(30)
    ]
    for future in done:
        future.result(timeout=60)
    assert Store(engine_for(store_url)).alert_count() == 300  # stored before the answer
    recorder.close()
    assert sum(written) == 300


def _attacks(n: int, prefix: str) -> list[Classified]:
    return [Classified(1.0, "5", record(src=f"{prefix}.{i}"), ATTACK) for i in range(n)]


def test_a_batch_sent_again_is_stored_once(store_url):
    """An agent resends a batch whose answer it did not get (a 503 while the batch was still
    queued, a server killed after the commit): its id makes the store keep it once."""
    store = ready_store(store_url)
    first = Batch([*_attacks(5, "10.4.0"), Classified(1.0, "5", record(), NORMAL)], "agent-1.42")
    written = store.write_batches([first, first])  # twice in one transaction
    assert (written.stored, written.counted, written.duplicates) == (5, 6, 6)
    other = Batch(_attacks(2, "10.4.1"))  # no id: stored each time
    written = store.write_batches([first, other, other])
    assert (written.stored, written.counted, written.duplicates) == (4, 4, 6)
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.sum(verdict_counts.c.flows))) == 10
        assert connection.scalar(select(func.count()).select_from(batches)) == 1
    assert store.alert_count() == 9
    store.purge(older_than=2.0)  # batch ids go with the retention
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(batches)) == 0


def test_records_the_store_refuses_do_not_hold_up_the_others(store_url, caplog):
    """A value too long for its column or a NUL byte (refused by PostgreSQL, kept by SQLite),
    an integer past 64 bits (refused by both): only those records are left out, logged and
    counted; the rest of their batch and the batches behind it are stored once."""
    refused, written = [], []
    recorder = Recorder(
        Store(engine_for(store_url)), on_written=written.append, on_refused=refused.append
    )
    bad = [
        record() | {"protocol_type": "p" * 20},
        record(src="10.9.0.\x00"),
        record(agent="a\x00b"),
        record() | {"src_port": 2**70},
    ]
    good = [record(src=f"10.9.1.{i}") for i in range(40)]
    with caplog.at_level(logging.ERROR, logger="desy.serving.store"):
        mixed = recorder.submit("5", good[:20] + bad + good[20:], [ATTACK] * 44, batch_id="b-1")
        behind = [
            recorder.submit("5", [record(src=f"10.9.2.{i}")], [ATTACK], batch_id=f"b-2.{i}")
            for i in range(5)
        ]
        for future in [mixed, *behind]:
            future.result(timeout=120)
        again = recorder.submit("5", good[:20] + bad + good[20:], [ATTACK] * 44, batch_id="b-1")
        again.result(timeout=120)  # sent again: not stored twice
        recorder.close()
    rejected = 4 if store_url.startswith("postgresql") else 1
    assert sum(refused) == rejected
    assert sum(written) == 40 + 5 + (4 - rejected)
    with engine_for(store_url).connect() as connection:
        stored = connection.execute(select(alerts.c.src_ip)).scalars().all()
    assert sorted(src for src in stored if src[:6] in ("10.9.1", "10.9.2")) == sorted(
        [f"10.9.1.{i}" for i in range(40)] + [f"10.9.2.{i}" for i in range(5)]
    )
    named = [r.getMessage() for r in caplog.records if "refused a record" in r.getMessage()]
    assert len(named) == rejected and any("1180591620717411303424" in n for n in named)
    assert not any("[SQL" in r.getMessage() for r in caplog.records)


def _down_url(tmp_path) -> str:
    return "postgresql://postgres@/postgres?host=" + str(tmp_path / "no-server-here")


def test_a_store_down_says_so_refuses_past_its_queue_and_counts_the_rest(tmp_path, caplog):
    dropped, status = [], []
    with caplog.at_level(logging.ERROR, logger="desy.serving.store"):
        recorder = Recorder(
            Store(engine_for(_down_url(tmp_path))),
            max_pending=100,
            on_dropped=dropped.append,
            on_status=status.append,
        )
        queued = [recorder.submit("5", [record()] * 30, [ATTACK] * 30) for _ in range(3)]
        with pytest.raises(QueueFull):
            recorder.submit("5", [record()] * 30, [ATTACK] * 30)
        deadline = time.monotonic() + 30
        while len(status) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status[0].startswith("alert store not ready")
        assert status[1].startswith("alert store unreachable (preparing its schema): ")
        assert not any(future.done() for future in queued)
        closer = threading.Thread(target=recorder.close)
        closer.start()
        closer.join(30)
    assert not closer.is_alive()
    for future in queued:
        with pytest.raises(NotWritten):
            future.result(timeout=0)
    assert dropped == [90] and recorder.lost == 90
    lines = [r.getMessage() for r in caplog.records]
    assert sum("90 verdicts could not be written" in line for line in lines) == 1
    assert not any("[SQL" in line or "10.0.0.1" in line for line in lines)


def test_a_locked_store_delays_the_commit_until_it_is_free(tmp_path):
    """A batch waits, queued, while another process holds SQLite's write lock, and is
    committed once it lets go."""
    url = f"sqlite:///{tmp_path}/alerts.db"
    ready_store(url)
    recorder = Recorder(Store(engine_for(url)))
    recorder.submit("5", [record()], [ATTACK]).result(timeout=60)
    holder = sqlite3.connect(tmp_path / "alerts.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiting: Future = recorder.submit("5", [record(src="10.5.0.1")], [ATTACK], batch_id="x")
    time.sleep(1.0)
    assert not waiting.done()  # it cannot be: the lock is held
    holder.execute("ROLLBACK")
    holder.close()
    waiting.result(timeout=90)
    recorder.close()
    assert Store(engine_for(url)).alert_count() == 2


def test_sqlite_keeps_under_its_size_limit_by_dropping_the_oldest(tmp_path):
    store = ready_store(f"sqlite:///{tmp_path}/alerts.db")
    for batch in range(20):
        store.write(
            [
                Classified(
                    1_800_000_000.0 + batch * 100 + n, "5", record(src=f"10.3.{batch}.{n}"), ATTACK
                )
                for n in range(100)
            ]
        )
    assert store.alert_count() == 2000
    deleted = store.shrink(max_bytes=256 * 1024)
    assert 0 < deleted < 2000 and store.alert_count() == 2000 - deleted
    with store.engine.connect() as connection:
        oldest = connection.execute(text("SELECT min(received_at) FROM alerts")).scalar_one()
    assert oldest > 1_800_000_000.0  # the oldest went first
    assert store.shrink(max_bytes=256 * 1024) == 0  # it fits now


def test_a_bad_store_url_is_refused_with_a_clear_error():
    for url, said in (
        ("mysql://db/alerts", "SQLite or PostgreSQL"),
        ("nonsense", "not a database URL"),
    ):
        done = run([sys.executable, "-m", "commands", "serve", "--store-url", url], 60)
        assert done.returncode == 2 and said in done.stderr


def test_migrations_go_down_and_up_again_keeping_the_alerts(store_url):
    from alembic import command
    from alembic.config import Config

    from alerts.database import MIGRATIONS

    store = ready_store(store_url)
    store.write([Classified(1.0, "5", record(), ATTACK, Source("eth0", "/var/log/desy"))])
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    assert not {"sources", "users", "sessions", "batches", "incidents"} & set(
        inspect(store.engine).get_table_names()
    )
    store = ready_store(store_url)
    store.write([Classified(2.0, "5", record(), ATTACK, Source("eth0", "/var/log/desy"))])
    said = group_alerts(store.engine, GroupKey("dos", "10.0.0.1", "10.0.0.2"), Filters("any"))
    assert [(a["received_at"], a["capture"]) for a in said] == [(2.0, "eth0"), (1.0, None)]
