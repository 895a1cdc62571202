"""An alert group: the alerts of one category from one source to one destination. Its identity,
defined once for the store, the queries and the dashboard: its fields, the 64-bit key that
indexes it, the value that names it in a form, the condition that selects its rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from functools import lru_cache
from operator import attrgetter
from urllib.parse import quote, unquote

from sqlalchemy import Column, Table, and_
from sqlalchemy.sql.elements import ColumnElement

from alerts.filters import BadQuery, check_category
from alerts.tables import alerts

#: The width of the stored addresses (alerts.src_ip, dst_ip; actions too).
ADDRESS_WIDTH = alerts.c.src_ip.type.length


@dataclass(frozen=True)
class GroupKey:
    """An alert group, its addresses as stored: empty (records sent without endpoints), and
    whatever older servers stored (an IPv6 scope id holding "|", say) is a group like any other.
    Only what no store holds is refused: text wider than the column, or with a NUL byte."""

    category: str
    src_ip: str
    dst_ip: str

    def __post_init__(self) -> None:
        check_category(self.category)
        for name in ("src_ip", "dst_ip"):
            value = getattr(self, name)
            if len(value) > ADDRESS_WIDTH or "\0" in value:
                raise BadQuery(
                    f"{name} must be an address of at most {ADDRESS_WIDTH} characters, "
                    f"not {value[:60]!r}"
                )

    @classmethod
    def from_value(cls, value: str) -> GroupKey:
        """The group a form value (form_value) names."""
        parts = value.split("|")  # addresses may be empty: records sent without endpoints
        if len(parts) != len(FIELDS) or not parts[0]:
            raise BadQuery(f"not an alert group: {value!r}")
        return cls(*(unquote(part) for part in parts))

    @property
    def value(self) -> str:
        """The group as a form value."""
        return form_value(self.category, self.src_ip, self.dst_ip)

    def condition(self, table: Table = alerts) -> ColumnElement[bool]:
        """The rows of table (alerts, actions) that are the group's: by its fields, first by
        its index key where the table has one."""
        same = [column == getattr(self, column.name) for column in group_columns(table)]
        if "group_key" in table.c:
            same.insert(0, table.c.group_key == group_key(self.category, self.src_ip, self.dst_ip))
        return and_(*same)


#: A group's fields, in order (the columns of alerts and actions that hold them).
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GroupKey))
#: The group of a row (an alerts row, an AlertRow) as a plain tuple of its fields.
group_of = attrgetter(*FIELDS)


def group_columns(table: Table) -> tuple[Column, ...]:
    """The columns of table that hold a group's fields."""
    return tuple(table.c[name] for name in FIELDS)


@lru_cache(maxsize=65_536)  # the same groups, over and over
def group_key(category: str, src_ip: str, dst_ip: str) -> int:
    """A 64-bit hash of an alert group (the first 8 bytes of the MD5 of "category|src|dst", signed):
    the group's alerts are found through an index of 8-byte keys, a third of the cost of indexing
    the three strings. Distinct groups can share a key: queries compare the strings too."""
    digest = hashlib.md5(f"{category}|{src_ip}|{dst_ip}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def form_value(category: str, src_ip: str, dst_ip: str) -> str:
    """A group as a form value: category|source|destination, each part %-escaped (a stored
    address may hold a "|"); GroupKey.from_value reads it back."""
    return "|".join(quote(part, safe=":") for part in (category, src_ip, dst_ip))
