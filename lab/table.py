"""The labelled flow table: the agent's rows, labelled from the roles of their hosts.

A connection is an attack when the attacker is one of its endpoints or when its originator is
an IPv4 address no lab host has (a spoofed source); it then carries the scenario's label.
Every other connection is normal: the lab's attacker has no IPv6 address, so IPv6 link-local and
multicast traffic is always the normal hosts'. The file is CSV with a header: the 41 features
and `label`, `difficulty` in NSL-KDD's order, then `category`, `scenario`, `family`, `run` and
the endpoints and times. Site data (analysts' verdicts) uses the same columns.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from pathlib import Path

from desy.records import LABELLED_FIELDS
from desy.schema import DIFFICULTY, LABEL, category_of
from lab.network import ATTACKER, BENIGN_ADDRESSES

#: Lab rows are not graded by a panel of learners as NSL-KDD's were: difficulty 0 says so.
UNGRADED = 0


def is_attack(src_ip: str, dst_ip: str) -> bool:
    """Whether a connection between these endpoints is the attacker's."""
    if ATTACKER.ip in (src_ip, dst_ip):
        return True
    return ":" not in src_ip and src_ip not in BENIGN_ADDRESSES


def label_rows(
    rows: Iterable[dict[str, str]], scenario: str, family: str, label: str, run: str
) -> list[dict[str, str]]:
    """The agent's CSV rows with label, category and provenance columns added."""
    labelled = []
    for row in rows:
        name = label if is_attack(row["src_ip"], row["dst_ip"]) else "normal"
        labelled.append(
            row
            | {
                LABEL: name,
                DIFFICULTY: str(UNGRADED),
                "category": category_of(name),
                "scenario": scenario,
                "family": family,
                "run": run,
            }
        )
    return labelled


def cap_attacks(rows: list[dict[str, str]], limit: int, rng: random.Random) -> list[dict[str, str]]:
    """Keep every normal row and at most `limit` attack rows (a uniform sample, in time order).

    A flood makes tens of thousands of near-identical connections; their features were computed
    on the whole capture, so a sample keeps what they look like without swamping the table.
    """
    attacks = [i for i, row in enumerate(rows) if row["category"] != "normal"]
    if len(attacks) <= limit:
        return rows
    drop = set(attacks) - set(rng.sample(attacks, limit))
    return [row for i, row in enumerate(rows) if i not in drop]


def read_agent_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write(rows: Iterable[dict[str, str]], path: Path) -> int:
    """Write the table; returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, LABELLED_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
