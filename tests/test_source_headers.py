"""What an agent says about where it captures, as the server reads it from request headers."""

from __future__ import annotations

from urllib.parse import quote

from serving.guard import _said


def test_a_path_comes_back_as_the_agent_sent_it():
    path = "/var/log/désy agent/eth0"
    assert _said(quote(path).encode()) == path


def test_control_characters_are_dropped_and_length_bounded():
    said = _said(b"%0d%0a%1b[31mX" + b"a" * 1000)
    assert said.startswith("[31mXa") and len(said) == 256
    assert _said(b"%ff%fe\xff") == "\ufffd\ufffd\xff"  # not UTF-8: replaced, never an error
