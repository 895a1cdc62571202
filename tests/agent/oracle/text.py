"""CSV text of rows, as capture_agent/cli.py writes it before the rewrite."""

from __future__ import annotations

from desy.records import ROW_FIELDS

HEADER = ",".join(ROW_FIELDS) + "\n"
#: One CSV line per record (cli.CSV_LINE).
CSV_LINE = ",".join(["%s"] * len(ROW_FIELDS)) + "\n"


def csv_lines(rows: list[tuple]) -> list[str]:
    """Each row as its CSV line."""
    return [CSV_LINE % row for row in rows]
