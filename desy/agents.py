"""The agents a server accepts: one token each, stored only as a SHA-256 hash, in a JSON file that
`desy agents add|list|disable` manages and the server re-reads when it changes (a disabled agent
is refused at its next request). The server takes an agent's id from its token, never from the
records it sends, so no agent can speak for another."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class AgentsError(ValueError):
    """A bad agent id, an agent that exists already or does not, or an unreadable file."""


@dataclass(frozen=True)
class Agent:
    id: str
    token_sha256: str
    enabled: bool = True


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load(path: Path) -> list[Agent]:
    """The agents of a file (none if it does not exist yet)."""
    if not path.exists():
        return []
    try:
        return [Agent(**entry) for entry in json.loads(path.read_text())["agents"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AgentsError(f"{path}: not an agents file ({err})") from None


def save(path: Path, agents: list[Agent]) -> None:
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
        raise AgentsError(f"agent id {agent_id!r}: letters, digits, '.', '_', '-', at most 128")
    agents = load(path)
    if any(agent.id == agent_id for agent in agents):
        raise AgentsError(f"agent {agent_id!r} exists already")
    token = secrets.token_urlsafe(32)
    save(path, [*agents, Agent(agent_id, token_hash(token))])
    return token


def disable(path: Path, agent_id: str) -> None:
    agents = load(path)
    if not any(agent.id == agent_id for agent in agents):
        raise AgentsError(f"no agent {agent_id!r} in {path}")
    save(path, [Agent(a.id, a.token_sha256, False) if a.id == agent_id else a for a in agents])


class Registry:
    """Token → agent id for the server, re-reading the file whenever it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.by_hash: dict[str, str] = {}
        self._reload()

    def agent_for(self, token: str) -> str | None:
        """The enabled agent whose token this is, else None."""
        self._reload()
        return self.by_hash.get(token_hash(token))

    def _reload(self) -> None:
        """Re-read a changed file; a missing or broken one refuses every agent (fails closed)."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self.stamp:
                self.by_hash = {
                    agent.token_sha256: agent.id for agent in load(self.path) if agent.enabled
                }
                self.stamp = stamp
        except (OSError, AgentsError):
            self.by_hash, self.stamp = {}, None
