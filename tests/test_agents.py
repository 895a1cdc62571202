"""The agents file: tokens kept only as hashes, ids checked, disable, a changed file re-read,
a broken one named in the log while the last good agents are kept, a missing one refusing
everyone."""

from __future__ import annotations

import json
import logging
import stat

import pytest

from serving.agent_tokens import AgentsError, TokenFile, add, disable, load, token_hash


def test_tokens_are_kept_as_hashes_and_agents_can_be_disabled(tmp_path):
    path = tmp_path / "agents.json"
    token = add(path, "sensor-a")
    other = add(path, "sensor-b")
    assert token != other and len(token) >= 40
    assert token not in path.read_text() and token_hash(token) in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    registry = TokenFile(path)
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


def test_a_broken_file_is_logged_once_and_the_last_good_agents_kept(tmp_path, caplog):
    path = tmp_path / "agents.json"
    token = add(path, "sensor-a")
    registry = TokenFile(path)
    path.write_text(json.dumps({"agents": [{"id": "x"}]}))
    with caplog.at_level(logging.ERROR, logger="desy.agents"):
        for _ in range(5):  # many requests, one change: one line
            assert registry.agent_for(token) == "sensor-a"
    (line,) = caplog.messages
    assert str(path) in line and "not an agents file" in line and "keeping the 1" in line
    path.write_text("{")  # another change: another line
    with caplog.at_level(logging.ERROR, logger="desy.agents"):
        assert registry.agent_for(token) == "sensor-a"
    assert len(caplog.messages) == 2
    path.unlink()  # removed: every agent refused
    with caplog.at_level(logging.ERROR, logger="desy.agents"):
        assert registry.agent_for(token) is None
        assert registry.agent_for(token) is None
    assert len(caplog.messages) == 3 and "every agent is refused" in caplog.messages[2]
    assert add(path, "sensor-b") and registry.agent_for(token) is None


GOOD = {"id": "sensor-a", "token_sha256": "0" * 64, "enabled": True}


@pytest.mark.parametrize(
    "content, fault",
    [
        ("", "Expecting value"),
        ("[]", "list indices"),
        ('{"agents": {}}', "not a list"),
        (json.dumps({"agents": [GOOD, GOOD]}), "appears twice"),
        (json.dumps({"agents": [GOOD | {"id": "a b"}]}), "bad agent id"),
        (json.dumps({"agents": [GOOD | {"id": 7}]}), "bad agent id"),
        (json.dumps({"agents": [GOOD | {"token_sha256": "abc"}]}), "not a SHA-256"),
        (json.dumps({"agents": [GOOD | {"enabled": "no"}]}), "not true or false"),
        (json.dumps({"agents": [GOOD | {"role": "admin"}]}), "not {id, token_sha256, enabled}"),
        (json.dumps({"agents": ["sensor-a"]}), "not {id, token_sha256, enabled}"),
        (b"\xff\xfe", "utf-8"),
    ],
)
def test_what_is_not_an_agents_file(tmp_path, content, fault):
    path = tmp_path / "agents.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(AgentsError) as refused:
        load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: not an agents file") and fault in message
    assert "\n" not in message
