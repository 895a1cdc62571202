"""Feature plugins: the row is assembled by name and checked against desy.records at start-up.

The plugins are the oracle's (tests/agent/oracle): the native engine computes the same row in C,
held to the oracle by test_engine_identical.py.
"""

from __future__ import annotations

import random

import pytest

from desy.records import ROW_FIELDS
from desy.schema import FEATURE_NAMES
from tests.agent.oracle.extractor import Extractor
from tests.agent.oracle.features import RowBuilder, SchemaMismatch, default_plugins
from tests.agent.oracle.pcap import frames
from tests.conftest import PCAPS


def rows(path, builder: RowBuilder) -> list[tuple]:
    extractor = Extractor()
    extractor.rows = builder
    out = []
    for frame, linktype, ts in frames(path):
        out += extractor.feed(frame, linktype, ts)
    return out + extractor.finish()


def test_the_default_plugins_produce_the_record_fields_in_order():
    produced = [name for plugin in default_plugins() for name in plugin.names]
    assert produced == list(ROW_FIELDS)
    assert RowBuilder().reorder is None  # the common case costs no reordering


def test_plugins_in_any_order_give_the_same_rows():
    plugins = default_plugins()
    random.Random(3).shuffle(plugins)
    assert [type(p) for p in plugins] != [type(p) for p in default_plugins()]
    capture = PCAPS / "tcp_two_way_all_flags.pcap"
    reference = rows(capture, RowBuilder())
    assert len(reference) > 4000
    assert rows(capture, RowBuilder(plugins)) == reference


class Extra:
    names = ("packets_per_second",)

    def on_expire(self, conn) -> tuple:
        return (0.0,)


def test_a_family_the_schema_does_not_know_is_refused_at_start_up():
    with pytest.raises(SchemaMismatch, match="not in the schema \\['packets_per_second'\\]"):
        RowBuilder([*default_plugins(), Extra()])


def test_a_missing_or_doubled_family_is_refused_at_start_up():
    plugins = default_plugins()
    with pytest.raises(SchemaMismatch, match="missing \\['count'"):
        RowBuilder([p for p in plugins if "count" not in p.names])
    with pytest.raises(SchemaMismatch, match="produced twice \\['dst_bytes', 'duration'"):
        RowBuilder([*plugins, plugins[0]])
    assert len(FEATURE_NAMES) == 41
