"""The server's settings: each DESY_* variable read and checked once, a bad one named clearly,
handed to the workers as it was read."""

from __future__ import annotations

import pytest

from serving.settings import ConnectionLimits, ServerSettings, SettingsError, read

TIMEOUTS = [
    ("DESY_HEADER_TIMEOUT", "header_timeout", 10),
    ("DESY_BODY_TIMEOUT", "body_timeout", 60),
]


@pytest.mark.parametrize(("variable", "field", "default"), TIMEOUTS)
@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1e9", "nan"])
def test_a_bad_timeout_is_refused_clearly(monkeypatch, variable, field, default, raw):
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError, match=f"{variable} must be seconds"):
        read(ConnectionLimits)


@pytest.mark.parametrize(("variable", "field", "default"), TIMEOUTS)
def test_a_timeout_comes_from_the_environment(monkeypatch, variable, field, default):
    monkeypatch.delenv(variable, raising=False)
    assert getattr(read(ConnectionLimits), field) == default
    monkeypatch.setenv(variable, "2.5")
    assert getattr(read(ConnectionLimits), field) == 2.5


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("DESY_STORE_MAX_MB", "lots"),
        ("DESY_STORE_WAIT_SECONDS", "0"),
        ("DESY_STORE_ALL", "maybe"),
        ("DESY_WORKERS", "-2"),
        ("DESY_PORT", "70000"),
        ("DESY_SSL_CERTFILE", "/no/such/cert.pem"),
    ],
)
def test_a_bad_value_is_one_error_naming_its_variable_and_value(monkeypatch, variable, raw):
    monkeypatch.setenv(variable, raw)
    with pytest.raises(SettingsError) as refused:
        read(ServerSettings)
    message = str(refused.value)
    assert message.startswith(f"{variable} ") and repr(raw) in message
    assert "\n" not in message and "validation error" not in message


def test_an_option_wins_and_a_bad_one_is_named_as_the_option(monkeypatch):
    monkeypatch.setenv("DESY_STORE_MAX_MB", "64")
    assert read(ServerSettings, store_max_mb=128).store_max_mb == 128
    with pytest.raises(SettingsError, match="^--store-max-mb "):
        read(ServerSettings, store_max_mb=0)


def test_the_workers_read_back_what_the_command_checked(monkeypatch, tmp_path):
    agents = tmp_path / "agents.json"
    monkeypatch.setenv("DESY_API_TOKEN", "")  # empty: unset
    checked = read(ServerSettings, workers=0, agents_file=agents, access_log=True)
    assert checked.workers >= 1 and checked.api_token is None and checked.agents_file == agents
    for name, value in checked.environ().items():
        monkeypatch.setenv(name, value)
    assert read(ServerSettings) == checked
