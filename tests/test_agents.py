"""The agents file: tokens kept only as hashes, ids checked, disable, a changed file re-read,
a broken or missing one refusing everyone."""

from __future__ import annotations

import json
import stat

import pytest

from desy.agents import AgentsError, Registry, add, disable, load, token_hash


def test_tokens_are_kept_as_hashes_and_agents_can_be_disabled(tmp_path):
    path = tmp_path / "agents.json"
    token = add(path, "sensor-a")
    other = add(path, "sensor-b")
    assert token != other and len(token) >= 40
    assert token not in path.read_text() and token_hash(token) in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    registry = Registry(path)
    assert registry.agent_for(token) == "sensor-a" and registry.agent_for(other) == "sensor-b"
    assert registry.agent_for("guess") is None
    disable(path, "sensor-a")
    assert [(a.id, a.enabled) for a in load(path)] == [("sensor-a", False), ("sensor-b", True)]
    assert registry.agent_for(token) is None  # re-read at once
    with pytest.raises(AgentsError):
        add(path, "sensor-b")
    for bad in ("", "../x", "a b", "x" * 129):
        with pytest.raises(AgentsError):
            add(path, bad)
    with pytest.raises(AgentsError):
        disable(path, "nobody")


def test_a_broken_or_missing_file_refuses_everyone(tmp_path):
    path = tmp_path / "agents.json"
    token = add(path, "sensor-a")
    registry = Registry(path)
    path.write_text(json.dumps({"agents": [{"id": "x"}]}))
    assert registry.agent_for(token) is None
    with pytest.raises(AgentsError):
        load(path)
    path.unlink()
    assert registry.agent_for(token) is None
