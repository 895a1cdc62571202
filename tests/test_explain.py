"""Path contributions (pipelines.explain) on real connections: the prepared KDDTest+ table and
the connections the agent extracts from shared captures, under the small model."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from capture_agent.extractor import extract_file
from desy import schema
from desy.records import record
from pipelines.explain import ForestExplainer
from tests.conftest import PCAPS

CAPTURES = ("synflood_spoofed.pcap", "nmap_80_all.pcap", "simple_http_loopback.pcap", "whois.pcap")
LINE = re.compile(r"^\w+ \S+ — typical normal \S+ — [+-]\d\.\d\d$")


def captured(name: str) -> pd.DataFrame:
    """The connections the agent extracts from a shared capture, as records."""
    rows = [row for block, _ in extract_file(PCAPS / name) for row in block]
    return pd.DataFrame([record(row, "test") for row in rows])


@pytest.fixture(scope="module")
def explainer(small_model):
    pipeline, meta, _ = small_model
    return ForestExplainer(pipeline, meta, "small")


@pytest.fixture(scope="module")
def connections(small_tables):
    """500 KDDTest+ rows and every connection of four captures."""
    frames = [small_tables["kddtest_plus"].sample(500, random_state=3)]
    frames += [captured(name) for name in CAPTURES]
    return pd.concat([f[list(schema.FEATURE_NAMES)] for f in frames], ignore_index=True)


def test_contributions_add_up_to_the_forest_probabilities(explainer, small_model, connections):
    pipeline, _, _ = small_model
    contributions, probabilities = explainer.contributions(connections)
    expected = pipeline.predict_proba(connections)
    assert len(connections) > 1000
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-9)
    assert contributions.shape == (len(connections), 41, len(explainer.classes))
    for name in schema.CATEGORICAL:  # its one-hot columns are summed back into it
        assert np.abs(contributions[:, schema.FEATURE_NAMES.index(name)]).sum() > 0, name
    # the steps move probability between classes: each feature's contributions sum to zero
    np.testing.assert_allclose(contributions.sum(axis=2), 0, atol=1e-9)


def test_a_flood_connection_is_explained_by_its_half_open_state(explainer, small_model):
    flood = captured("synflood_spoofed.pcap").iloc[0].to_dict()
    found = explainer.explain(flood)
    pipeline, _, _ = small_model
    (probabilities,) = pipeline.predict_proba(pd.DataFrame([flood])[list(schema.FEATURE_NAMES)])
    assert (found.verdict, found.category) == ("dos", "dos")
    assert found.probability == pytest.approx(probabilities[explainer.classes.index("dos")])
    total = found.base + sum(c.contribution for c in found.contributions)
    assert total == pytest.approx(found.probability, abs=1e-9)
    top = {c.feature for c in found.contributions[:5]}
    assert top & {"flag", "serror_rate", "srv_serror_rate", "dst_host_serror_rate", "logged_in"}
    assert all(c.contribution for c in found.contributions[:5])


def test_a_normal_verdict_is_explained_against_its_likeliest_attack(
    explainer, small_model, small_tables
):
    normal = small_tables["kddtest_plus"].query("category == 'normal'").iloc[:1]
    found = explainer.explain(normal.iloc[0].to_dict())
    (probabilities,) = small_model[0].predict_proba(normal[list(schema.FEATURE_NAMES)])
    attacks = {c: p for c, p in zip(explainer.classes, probabilities) if c != "normal"}
    assert (found.verdict, found.category) == ("normal", max(attacks, key=attacks.get))
    assert found.probability == pytest.approx(max(attacks.values()), abs=1e-9)
    assert found.attack_probability == pytest.approx(sum(attacks.values()), abs=1e-9)


def test_typical_normal_values_come_from_the_normal_training_rows(small_model, explainer):
    _, meta, _ = small_model
    typical = meta["normal_typical"]
    assert list(typical) == list(schema.FEATURE_NAMES)
    assert (typical["flag"], typical["protocol_type"], typical["serror_rate"]) == ("SF", "tcp", 0)
    flood = captured("synflood_spoofed.pcap").iloc[0].to_dict()
    lines = explainer.explain(flood).lines(41)
    assert lines[0].startswith("P(dos) ") and "verdict dos" in lines[0]
    assert all(LINE.match(line) for line in lines[1:-1]), lines
    assert f"flag {flood['flag']} — typical normal SF — " in "\n".join(lines)
    assert lines[-1] == "0 other features together: +0.00"
