"""Writing verdicts to the alert store, and keeping it within its retention (the database itself:
alerts.database)."""

from __future__ import annotations

from collections import Counter, namedtuple
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import Connection, Engine, delete, exc, exists, func, literal_column, select

from alerts.addresses import address_key
from alerts.database import WRITE_LOCK, binds, one_at_a_time, positional_sql
from alerts.groups import group_key
from alerts.incidents import QUIET_SECONDS, assign, recount
from alerts.suppression import Suppressions
from alerts.tables import agents, alerts, batches, incidents, sources, verdict_counts
from desy.schema import FEATURE_NAMES


class Source(NamedTuple):
    """Where the agent that sent a record captures, as it says (empty: it did not say)."""

    capture: str = ""  # an interface, or a pcap file
    log_dir: str = ""  # its log directory (capture.pcap and rotations)


#: An agent that did not say where it captures.
UNKNOWN_SOURCE = Source()
#: A row of verdict counts, and of an agent's last contact (its Source's fields last), in order.
COUNT_FIELDS = ("minute", "agent_id", "category", "flows")
AGENT_FIELDS = ("agent_id", "last_seen", "model_version", *Source._fields)
_EMPTY = literal_column("''")  # written into the SQL: the upserts' only parameters are the fields
#: How many (agent, source) numbers a Store remembers (forgotten all at once past that).
SOURCES_CACHED = 10_000


class Classified(NamedTuple):
    """A record and its verdict, as the server answered them."""

    received_at: float
    model_version: str
    record: Mapping[str, Any]
    verdict: Mapping[str, Any]
    source: Source = UNKNOWN_SOURCE


class Batch(NamedTuple):
    """The records of one request, and the id its agent named it with (None: stored without
    dedupe)."""

    items: list[Classified]
    batch_id: str | None = None


@dataclass
class Written:
    """What a write did: rows stored, verdicts counted, verdicts skipped as already stored
    (their batch id was), the records refused with the reason, and the incidents it created or
    added to (alerts.incidents.assign's reports)."""

    stored: int = 0
    counted: int = 0
    duplicates: int = 0
    refused: list[tuple[Classified, str]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Written) -> None:
        self.stored += other.stored
        self.counted += other.counted
        self.duplicates += other.duplicates
        self.refused += other.refused
        self.incidents += other.incidents


class _Parts(NamedTuple):
    rows: list[Any]
    counts: Counter[tuple[int, str, str]]
    seen: dict[str, tuple[float, str, Source]]
    refused: list[tuple[Classified, str]]


#: Errors of a record, not of the store: the record is refused, the others are stored. Python's
#: own come from building a row (a field missing, a string that cannot be encoded) or from
#: SQLite's driver (OverflowError: an integer past 64 bits).
DATA_ERRORS = (exc.DataError, exc.IntegrityError, KeyError, TypeError, ValueError, OverflowError)


def error_line(err: BaseException, limit: int = 300) -> str:
    """The error's kind and the first line of what it says (the driver's words: no SQL, no
    parameters), at most limit characters."""
    cause = err.orig if isinstance(err, exc.DBAPIError) and err.orig is not None else err
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:limit]


def _received(batch: Batch) -> float:
    """When the server received a batch (its first record's time; 0 if it is empty)."""
    return batch.items[0].received_at if batch.items else 0.0


class Store:
    """The alert store behind one engine; an incident ends after quiet_seconds without an
    alert of it. With report_incidents, a write says what it did to incidents (Written.incidents:
    for the webhook)."""

    def __init__(
        self, engine: Engine, quiet_seconds: float = QUIET_SECONDS, report_incidents: bool = False
    ) -> None:
        self.engine = engine
        self.quiet_seconds = quiet_seconds
        self.report_incidents = report_incidents
        self.suppressions = Suppressions(engine)
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        self._insert = insert
        # Alerts (tuples: an AlertRow and its incident), counts and agents go in through the SQL
        # SQLAlchemy compiles for this database, run with the driver's executemany.
        columns = (*ALERT_COLUMNS, "incident_id")
        self._insert_alerts, names = positional_sql(
            alerts.insert().values(binds(columns)), engine.dialect
        )
        assert names == columns
        self._count_upsert, names = positional_sql(self._counts(), engine.dialect)
        assert names == COUNT_FIELDS
        self._agent_upsert, names = positional_sql(self._agents(), engine.dialect)
        assert names == AGENT_FIELDS
        self._source_ids: dict[tuple[str, Source], int] = {}

    def write(self, batch: Iterable[Classified], keep_normal: bool = False) -> int:
        """Store one batch without a batch id (see write_batches); the number of rows stored."""
        return self.write_batches([Batch(list(batch))], keep_normal).stored

    def write_batches(self, queued: Sequence[Batch], keep_normal: bool = False) -> Written:
        """Store the attack verdicts of the batches (every verdict if keep_normal), count all of
        them per minute, agent and category, note each agent's last contact and record the
        batch ids, in one transaction; a batch whose id is in the store already is skipped.

        Records the store refuses (DATA_ERRORS: a value too long, a NUL byte on PostgreSQL) do
        not hold up the others: the batches are then written one by one, a refused one halved
        until its bad records are found, and the rest of it stored. Errors of the store itself
        (down, locked) are raised: nothing of the batches is then stored."""
        try:
            return self._commit(queued, keep_normal)
        except DATA_ERRORS:
            pass
        written = Written()
        for batch in queued:
            try:
                written.add(self._commit([batch], keep_normal))
                continue
            except DATA_ERRORS:
                refused = self._refusals(batch.items, keep_normal)
            bad = {id(item) for item, _ in refused}
            rest = batch._replace(items=[item for item in batch.items if id(item) not in bad])
            try:
                written.add(self._commit([rest], keep_normal))
            except DATA_ERRORS as err:  # refused together, though each alone was not
                refused += [(item, error_line(err)) for item in rest.items]
            written.refused += refused
        return written

    def _commit(self, queued: Sequence[Batch], keep_normal: bool) -> Written:
        """write_batches in one transaction, raising whatever the store raises."""
        parts = [self._parts(batch, keep_normal) for batch in queued]
        # Finding an alert's incident reads, then writes: two workers at once would both start
        # the same incident.
        with one_at_a_time(self.engine, WRITE_LOCK) as connection:
            fresh = [parts[i] for i in self._claim(connection, queued)]
            rows, counts, seen = [], Counter(), {}
            for part in fresh:
                rows += part.rows
                counts.update(part.counts)
                seen.update(part.seen)
            ids, news = (
                assign(connection, rows, self.quiet_seconds, self.report_incidents)
                if rows
                else ([], [])
            )
            self._insert_parts(connection, rows, counts, seen, ids)
        refused = [refusal for part in fresh for refusal in part.refused]
        counted = counts.total()
        everything = sum(len(batch.items) for batch in queued)
        return Written(len(rows), counted, everything - counted - len(refused), refused, news)

    def _claim(self, connection: Connection, queued: Sequence[Batch]) -> list[int]:
        """The indexes of the batches to store: without an id, or the first with an id not in
        the store yet (recorded now, in one statement)."""
        first: dict[str, int] = {}
        for i, batch in enumerate(queued):
            if batch.batch_id is not None:
                first.setdefault(batch.batch_id, i)
        new: set[str] = set()
        if first:
            claim = self._insert(batches).on_conflict_do_nothing().returning(batches.c.batch_id)
            rows = [{"batch_id": b, "received_at": _received(queued[i])} for b, i in first.items()]
            new = set(connection.execute(claim, rows).scalars())
        return [
            i
            for i, batch in enumerate(queued)
            if batch.batch_id is None or (batch.batch_id in new and first[batch.batch_id] == i)
        ]

    def _parts(self, batch: Batch, keep_normal: bool) -> _Parts:
        """A batch's rows, counts and agents' last contact, and the records that cannot be
        made into rows."""
        rows: list[AlertRow] = []
        counts: Counter[tuple[int, str, str]] = Counter()
        seen: dict[str, tuple[float, str, Source]] = {}
        refused: list[tuple[Classified, str]] = []
        for item in batch.items:
            try:
                agent, category = item.record.get("agent_id", ""), item.verdict["category"]
                if keep_normal or item.verdict["label"] == "attack":
                    rows.append(_alert_row(item, self._source_id(agent, item.source)))
            except DATA_ERRORS as err:
                refused.append((item, error_line(err)))
                continue
            counts[(int(item.received_at // 60), agent, category)] += 1
            seen[agent] = (item.received_at, item.model_version, item.source)
        if rows:
            rows = self.suppressions.apply(rows)
        return _Parts(rows, counts, seen, refused)

    def _insert_parts(
        self,
        connection: Connection,
        rows: list[AlertRow],
        counts: Counter[tuple[int, str, str]],
        seen: dict[str, tuple[float, str, Source]],
        incident_ids: Sequence[int | None] | None = None,
    ) -> None:
        """Insert rows (each with its incident, or none), add the counts, note the agents."""
        if rows:
            ids = incident_ids if incident_ids is not None else [None] * len(rows)
            assert len(ids) == len(rows)
            params = list(map(tuple.__add__, rows, zip(ids)))  # each row and its incident
            connection.exec_driver_sql(self._insert_alerts, params)
        if counts:
            minutes = [(*key, n) for key, n in counts.items()]
            connection.exec_driver_sql(self._count_upsert, minutes)
        if seen:
            contacts = [(a, t, v, *source) for a, (t, v, source) in seen.items()]
            connection.exec_driver_sql(self._agent_upsert, contacts)

    def _refusals(self, items: list[Classified], keep_normal: bool) -> list[tuple[Classified, str]]:
        """The records of items the store refuses, and why, found by halving: each try is a
        transaction rolled back."""
        parts = self._parts(Batch(items), keep_normal)
        if parts.refused:
            bad = {id(item) for item, _ in parts.refused}
            rest = [item for item in items if id(item) not in bad]
            return parts.refused + self._refusals(rest, keep_normal)
        with self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                self._insert_parts(connection, parts.rows, parts.counts, parts.seen)
                return []
            except DATA_ERRORS as err:
                if len(items) == 1:
                    return [(items[0], error_line(err))]
            finally:
                transaction.rollback()
        half = len(items) // 2
        return self._refusals(items[:half], keep_normal) + self._refusals(items[half:], keep_normal)

    def _source_id(self, agent: str, source: Source) -> int | None:
        """The number of what an agent said it captures from (None: it said nothing); new ones
        are stored at once, in their own transaction."""
        if source == UNKNOWN_SOURCE:
            return None
        key = (agent, source)
        if (known := self._source_ids.get(key)) is not None:
            return known
        if len(self._source_ids) >= SOURCES_CACHED:
            self._source_ids.clear()
        row = {"agent_id": agent, "capture": source.capture, "log_dir": source.log_dir}
        with self.engine.begin() as connection:
            connection.execute(self._insert(sources).on_conflict_do_nothing(), row)
            self._source_ids[key] = connection.execute(
                select(sources.c.id).filter_by(**row)
            ).scalar_one()
        return self._source_ids[key]

    def _counts(self) -> Any:
        """The upsert of verdict counts: a minute's flows of an agent and category added."""
        statement = self._insert(verdict_counts).values(binds(COUNT_FIELDS))
        return statement.on_conflict_do_update(
            index_elements=["minute", "agent_id", "category"],
            set_={"flows": verdict_counts.c.flows + statement.excluded.flows},
        )

    def _agents(self) -> Any:
        """The upsert of an agent's last contact."""
        statement = self._insert(agents).values(binds(AGENT_FIELDS))
        later = (
            func.greatest if self.engine.dialect.name == "postgresql" else func.max
        )  # SQLite's 2-argument max
        return statement.on_conflict_do_update(
            index_elements=["agent_id"],
            set_={
                "last_seen": later(agents.c.last_seen, statement.excluded.last_seen),
                "model_version": statement.excluded.model_version,
                # what the agent said last; a request that says nothing keeps it
                **{
                    name: func.coalesce(
                        func.nullif(statement.excluded[name], _EMPTY), agents.c[name]
                    )
                    for name in ("capture", "log_dir")
                },
            },
        )

    def purge(self, older_than: float) -> int:
        """Delete alerts received and counts taken before older_than (epoch seconds), but not
        the alerts an analyst gave a verdict (training data: `desy feedback export`); returns
        the number of alerts deleted. Batch ids received before then go too, and the incidents
        over by then that have no alert left."""
        with self.engine.begin() as connection:
            deleted = _delete_alerts(connection, alerts.c.received_at < older_than)
            kept = exists().where(alerts.c.incident_id == incidents.c.id)
            connection.execute(delete(incidents).where(incidents.c.last_seen < older_than, ~kept))
            connection.execute(delete(batches).where(batches.c.received_at < older_than))
            connection.execute(
                delete(verdict_counts).where(verdict_counts.c.minute < int(older_than // 60))
            )
        return deleted

    def shrink(self, max_bytes: int) -> int:
        """SQLite: delete the oldest alerts (a tenth at a time) until the data fits in max_bytes,
        but not those an analyst gave a verdict; the freed pages are reused, the file itself
        does not shrink. Returns the number deleted (always 0 on PostgreSQL, whose size the
        operator manages)."""
        if self.engine.dialect.name != "sqlite":
            return 0
        deleted = 0
        with self.engine.begin() as connection:
            while _sqlite_bytes(connection) > max_bytes:
                count = connection.execute(
                    select(func.count()).select_from(alerts).where(_UNJUDGED)
                ).scalar_one()
                if not count:
                    break
                oldest = (
                    select(alerts.c.id)
                    .where(_UNJUDGED)
                    .order_by(alerts.c.received_at, alerts.c.id)  # the same rows twice
                    .limit(max(1, count // 10))
                )
                deleted += _delete_alerts(connection, alerts.c.id.in_(oldest))
        return deleted

    def alert_count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(alerts)).scalar_one()


#: Alerts no analyst gave a verdict: the ones retention may delete.
_UNJUDGED = alerts.c.analyst_category.is_(None)


def _delete_alerts(connection: Connection, condition: Any) -> int:
    """Delete the alerts no analyst judged that meet condition, and count the incidents they
    were in again; the number deleted."""
    chosen = (_UNJUDGED, condition, alerts.c.incident_id.is_not(None))
    touched = connection.execute(select(alerts.c.incident_id).where(*chosen).distinct())
    touched = touched.scalars().all()
    deleted = connection.execute(delete(alerts).where(_UNJUDGED, condition)).rowcount
    recount(connection, touched)
    return deleted


def _sqlite_bytes(connection: Any) -> int:
    """Bytes of a SQLite database's pages in use."""
    pragma = connection.exec_driver_sql
    pages = pragma("PRAGMA page_count").scalar_one() - pragma("PRAGMA freelist_count").scalar_one()
    return pages * pragma("PRAGMA page_size").scalar_one()


#: The columns of an AlertRow: what Store.write fills but the row id, the analyst's verdict that
#: comes later, and the incident (found under the write lock, added to the row as it is inserted).
ALERT_COLUMNS = tuple(
    c.name for c in alerts.columns if c.name not in ("id", "analyst_category", "incident_id")
)
#: An alert as it is inserted: a tuple in the table's column order, fields by name.
AlertRow = namedtuple("AlertRow", ALERT_COLUMNS)
_new_row = tuple.__new__
assert ALERT_COLUMNS == (
    *("received_at", "agent_id", "model_version", "label", "category", "attack_probability"),
    *("src_ip", "src_port", "dst_ip", "dst_port", "start_time", "end_time"),
    *("protocol_type", "service", "flag", "features", "status", "src_key", "dst_key"),
    *("group_key", "source_id"),
), "_alert_row fills the columns in this order"
_features = itemgetter(*FEATURE_NAMES)
_json = msgspec.json.Encoder().encode  # the features as a JSON array, at 7× json.dumps's speed


def _alert_row(item: Classified, source_id: int | None = None) -> AlertRow:
    record, verdict = item.record, item.verdict
    src, dst, category = record.get("src_ip", ""), record.get("dst_ip", ""), verdict["category"]
    return _new_row(  # positional, in ALERT_COLUMNS' order: a third faster than by keyword
        AlertRow,
        (
            item.received_at,
            record.get("agent_id", ""),
            item.model_version,
            verdict["label"],
            category,
            verdict["attack_probability"],
            src,
            record.get("src_port", 0),
            dst,
            record.get("dst_port", 0),
            record.get("start_time", 0.0),
            record.get("end_time", 0.0),
            record["protocol_type"],
            record["service"],
            record["flag"],
            _json(_features(record)).decode(),
            "new",  # status
            address_key(src),
            address_key(dst),
            group_key(category, src, dst),
            source_id,
        ),
    )
