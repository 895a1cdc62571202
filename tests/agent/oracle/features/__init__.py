"""The agent's features as plugins by family, after nfstream: each plugin declares the names it
produces and computes their values when a connection ends (`on_expire`), in emission order.

A new family is a module here with a plugin class, its names added to desy.schema, and the
plugin added to `default_plugins`. The row is assembled by name: `RowBuilder` checks once, at
start-up, that the plugins produce every field of desy.records.ROW_FIELDS exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from operator import itemgetter
from typing import Protocol

from desy.records import ROW_FIELDS
from tests.agent.oracle.connection import Finished
from tests.agent.oracle.features.basic import BasicFeatures, Endpoints
from tests.agent.oracle.features.content import ContentFeatures
from tests.agent.oracle.features.host_window import HostWindow
from tests.agent.oracle.features.time_window import TimeWindow


class FeaturePlugin(Protocol):
    """A family of features of ended connections."""

    names: tuple[str, ...]

    def on_expire(self, conn: Finished) -> tuple:
        """The values of `names`, in that order, for a connection that just ended."""
        ...


class SchemaMismatch(ValueError):
    """The plugins do not produce exactly the record's fields."""


def default_plugins() -> list[FeaturePlugin]:
    """Fresh plugins (the window families keep state across connections)."""
    return [BasicFeatures(), ContentFeatures(), TimeWindow(), HostWindow(), Endpoints()]


class RowBuilder:
    """Rows of ended connections, values in ROW_FIELDS order, from the plugins' values."""

    def __init__(self, plugins: Sequence[FeaturePlugin] | None = None) -> None:
        self.plugins = list(plugins) if plugins is not None else default_plugins()
        produced = [name for plugin in self.plugins for name in plugin.names]
        _check(produced)
        order = tuple(produced.index(name) for name in ROW_FIELDS)
        self.hooks = tuple(plugin.on_expire for plugin in self.plugins)
        self.reorder = None if order == tuple(range(len(order))) else itemgetter(*order)

    def row(self, conn: Finished) -> tuple:
        values: tuple = ()
        for hook in self.hooks:
            values += hook(conn)
        return values if self.reorder is None else self.reorder(values)


def _check(produced: list[str]) -> None:
    twice = sorted(name for name, n in Counter(produced).items() if n > 1)
    missing = sorted(set(ROW_FIELDS) - set(produced))
    unknown = sorted(set(produced) - set(ROW_FIELDS))
    if twice or missing or unknown:
        raise SchemaMismatch(
            f"feature plugins do not match desy.records.ROW_FIELDS: missing {missing}, "
            f"not in the schema {unknown}, produced twice {twice}"
        )
