"""The alert store on SQLite and on a real PostgreSQL: migration from an empty database, writes,
per-minute counts, retention, several writers at once, and the server's background recorder."""

from __future__ import annotations

import json
import multiprocessing
import sys
import threading
import time
from typing import Any

from sqlalchemy import func, inspect, select, text

from alerts.addresses import address_key
from alerts.queries import Filters, GroupKey, agent_sources, group_alerts
from alerts.store import Classified, Source, Store, _alert_row, engine_for, migrate
from alerts.tables import agents, alerts, group_key, sources, verdict_counts
from desy.schema import FEATURE_NAMES
from serving.recorder import Recorder
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
        "desy_store_version",
    } <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM desy_store_version")).scalar_one()
            == "0008"
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


def _find_new_groups(url: str, barrier: Any, rounds: int, found: Any) -> None:
    store = Store(engine_for(url))
    for n in range(rounds):
        batch = [Classified(1.0, "5", record(src=f"10.3.{n}.{i}"), ATTACK) for i in range(20)]
        new_groups: list = []
        barrier.wait(60)
        store.write(batch, new_groups=new_groups)
        found.put([group["src_ip"] for group in new_groups])


def test_workers_writing_the_same_new_groups_at_once_report_each_once(store_url):
    """The webhook tells of new groups: two workers storing alerts of the same new groups at
    the same moment must not both find them new."""
    ready_store(store_url)
    context = multiprocessing.get_context("spawn")
    barrier, found = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_find_new_groups, args=(store_url, barrier, 10, found))
        for _ in range(2)
    ]
    for process in workers:
        process.start()
    reported = [src for _ in range(2 * 10) for src in found.get(timeout=120)]
    for process in workers:
        process.join(60)
    assert sorted(reported) == sorted(f"10.3.{n}.{i}" for n in range(10) for i in range(20))


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
        "source_id": None,
    }  # fmt: skip
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


def test_the_recorder_writes_every_queued_verdict_at_close(store_url):
    written = []
    recorder = Recorder(
        Store(engine_for(store_url)), flush_interval=0.05, on_written=written.append
    )
    for i in range(30):
        recorder.submit("5", [record(src=f"10.2.0.{i}")] * 10, [ATTACK] * 10)
    recorder.close()
    assert sum(written) == 300
    assert Store(engine_for(store_url)).alert_count() == 300


def test_an_absent_store_never_blocks_and_counts_what_it_drops(tmp_path):
    dropped = []
    down = "postgresql://postgres@/postgres?host=" + str(tmp_path / "no-server-here")
    recorder = Recorder(
        Store(engine_for(down)), max_pending=100, flush_interval=0.05, on_dropped=dropped.append
    )
    started = time.monotonic()
    for _ in range(10):
        recorder.submit("5", [record()] * 30, [ATTACK] * 30)
    assert time.monotonic() - started < 1.0  # the request path only appends to a queue
    assert recorder.dropped >= 300 - 100 and sum(dropped) == recorder.dropped
    closer = threading.Thread(target=recorder.close)
    closer.start()
    closer.join(15)
    assert not closer.is_alive()
    assert sum(dropped) == 300  # the ones queued are counted too when it stops with the store down


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
        done = run([sys.executable, "-m", "desy.cli", "serve", "--store-url", url], 60)
        assert done.returncode == 2 and said in done.stderr


def test_migrations_go_down_and_up_again_keeping_the_alerts(store_url):
    from alembic import command
    from alembic.config import Config

    from alerts.store import MIGRATIONS

    store = ready_store(store_url)
    store.write([Classified(1.0, "5", record(), ATTACK, Source("eth0", "/var/log/desy"))])
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    assert not {"sources", "users", "sessions"} & set(inspect(store.engine).get_table_names())
    store = ready_store(store_url)
    store.write([Classified(2.0, "5", record(), ATTACK, Source("eth0", "/var/log/desy"))])
    said = group_alerts(store.engine, GroupKey("dos", "10.0.0.1", "10.0.0.2"), Filters("any"))
    assert [(a["received_at"], a["capture"]) for a in said] == [(2.0, "eth0"), (1.0, None)]
