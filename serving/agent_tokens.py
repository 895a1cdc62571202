"""The agents a server accepts: one token each, stored only as a SHA-256 hash, in a JSON file that
`desy agents add|list|disable` manages and the server re-reads when it changes (a disabled agent
is refused at its next request). The server takes an agent's id from its token, never from the
records it sends, so no agent can speak for another.

A file that is not a valid agents file is never taken silently: `desy serve` refuses to start on
it, and a running server that finds the file changed into one logs an ERROR naming the file and
the fault (once per change) and keeps the agents it had, as nginx keeps its running configuration
on a bad reload: a hand edit gone wrong must not stop every agent. A removed file refuses every
agent (logged too): removing it is how an operator revokes them all."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from desy.records import AGENT_ID_WIDTH

AGENT_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{AGENT_ID_WIDTH - 1}}}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger("desy.agents")


class AgentsError(ValueError):
    """A bad agent id, an agent that exists already or does not, or an unreadable file."""


@dataclass(frozen=True)
class AgentToken:
    """An agent of the file: its id, its token's hash, whether it is accepted."""

    id: str
    token_sha256: str
    enabled: bool = True


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load(path: Path) -> list[AgentToken]:
    """The agents of a file (none if it does not exist yet); AgentsError names what is wrong."""
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["agents"]
        if not isinstance(entries, list):
            raise TypeError("'agents' is not a list")
        agents = [_agent(entry) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AgentsError(f"{path}: not an agents file ({err})") from None
    ids = [agent.id for agent in agents]
    if len(set(ids)) != len(ids):
        raise AgentsError(f"{path}: not an agents file (an agent id appears twice)")
    return agents


def _agent(entry: Any) -> AgentToken:
    """An entry of the file, checked: TypeError or ValueError naming what is wrong."""
    if not isinstance(entry, dict) or set(entry) != {field.name for field in fields(AgentToken)}:
        raise TypeError(f"an entry is not {{id, token_sha256, enabled}}: {str(entry)[:80]}")
    agent = AgentToken(**entry)
    if not isinstance(agent.id, str) or not AGENT_ID.fullmatch(agent.id):
        raise ValueError(f"bad agent id {str(agent.id)[:80]!r}")
    if not isinstance(agent.token_sha256, str) or not SHA256_HEX.fullmatch(agent.token_sha256):
        raise ValueError(f"agent {agent.id!r}: token_sha256 is not a SHA-256 in hex")
    if not isinstance(agent.enabled, bool):
        raise TypeError(f"agent {agent.id!r}: enabled is not true or false")
    return agent


def save(path: Path, agents: list[AgentToken]) -> None:
    """Write the file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with os.fdopen(
        os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), "w"
    ) as out:
        json.dump({"agents": [asdict(agent) for agent in agents]}, out, indent=1)
    temporary.replace(path)


def add(path: Path, agent_id: str) -> str:
    """Register a new agent; returns its token (shown once, only its hash is kept)."""
    if not AGENT_ID.fullmatch(agent_id):
        raise AgentsError(
            f"agent id {agent_id!r}: letters, digits, '.', '_', '-', at most {AGENT_ID_WIDTH}"
        )
    agents = load(path)
    if any(agent.id == agent_id for agent in agents):
        raise AgentsError(f"agent {agent_id!r} exists already")
    token = secrets.token_urlsafe(32)
    save(path, [*agents, AgentToken(agent_id, token_hash(token))])
    return token


def disable(path: Path, agent_id: str) -> None:
    agents = load(path)
    if not any(agent.id == agent_id for agent in agents):
        raise AgentsError(f"no agent {agent_id!r} in {path}")
    save(path, [AgentToken(a.id, a.token_sha256, False) if a.id == agent_id else a for a in agents])


_MISSING: tuple[int, ...] = ()  # the stamp of a file that is not there


class TokenFile:
    """The agents file as the server reads it: token → agent id, re-read whenever it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp: tuple[int, ...] | None = None
        self.by_hash: dict[str, str] = {}
        self._reload()

    def agent_for(self, token: str) -> str | None:
        """The enabled agent whose token this is, else None."""
        self._reload()
        return self.by_hash.get(token_hash(token))

    def _reload(self) -> None:
        """Re-read a changed file. A broken one is logged once and the last good agents kept; a
        missing one refuses every agent."""
        try:
            stat = self.path.stat()
        except OSError as err:
            if self.stamp != _MISSING:
                log.error("agents file %s: %s: every agent is refused", self.path, err.strerror)
            self.by_hash, self.stamp = {}, _MISSING
            return
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            agents = load(self.path)
        except AgentsError as err:
            log.error("%s: keeping the %d enabled agent(s) read before", err, len(self.by_hash))
            return
        self.by_hash = {agent.token_sha256: agent.id for agent in agents if agent.enabled}
