"""Analysts' verdicts back to training: alerts marked false positive or confirmed with a category
become labelled flows in the site format (site/README.md), which `dvc repro` trains on."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from sqlalchemy import Engine, select

from alerts.tables import alerts
from desy.records import ENDPOINT_FIELDS
from desy.schema import DIFFICULTY, FEATURE_NAMES, LABEL

#: The NSL-KDD label a confirmed alert gets: one of its category's (only the category counts).
CATEGORY_LABEL = {
    "normal": "normal",
    "dos": "neptune",
    "probe": "portsweep",
    "r2l": "guess_passwd",
    "u2r": "buffer_overflow",
}
COLUMNS = (*FEATURE_NAMES, LABEL, DIFFICULTY, "scenario", "family", "run", *ENDPOINT_FIELDS)


def export(engine: Engine, out: Path) -> int:
    """Write every alert an analyst gave a verdict to out (CSV, site format): one run per agent
    and day, scenario "analyst", family the verdict's category. Returns the number of rows."""
    query = (
        select(alerts).where(alerts.c.analyst_category.is_not(None)).order_by(alerts.c.received_at)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with engine.connect() as connection, out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for alert in connection.execute(query):
            day = time.strftime("%Y-%m-%d", time.gmtime(alert.received_at))
            category = alert.analyst_category
            writer.writerow(
                [
                    *(alert.features[name] for name in FEATURE_NAMES),
                    CATEGORY_LABEL[category],
                    0,
                    "analyst",
                    category,
                    f"{alert.agent_id}-{day}",
                    *(getattr(alert, name) for name in ENDPOINT_FIELDS),
                ]
            )
            rows += 1
    return rows
