"""Analysts' verdicts back to training: alerts marked false positive or confirmed with a category
become labelled flows in the site format (site/README.md), which `dvc repro` trains on."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from sqlalchemy import Engine, select

from alerts.tables import alerts, features_by_name
from desy.records import ENDPOINT_FIELDS, LABELLED_FIELDS
from desy.schema import DIFFICULTY, LABEL

#: The NSL-KDD label a confirmed alert gets: one of its category's (only the category counts).
CATEGORY_LABEL = {
    "normal": "normal",
    "dos": "neptune",
    "probe": "portsweep",
    "r2l": "guess_passwd",
    "u2r": "buffer_overflow",
}


def export(engine: Engine, out: Path) -> int:
    """Write every alert an analyst gave a verdict to out (CSV, site format): one run per agent
    and day, scenario "analyst", family the verdict's category. Returns the number of rows."""
    query = (
        select(alerts).where(alerts.c.analyst_category.is_not(None)).order_by(alerts.c.received_at)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with engine.connect() as connection, out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, LABELLED_FIELDS)
        writer.writeheader()
        for alert in connection.execute(query):
            day = time.strftime("%Y-%m-%d", time.gmtime(alert.received_at))
            category = alert.analyst_category
            endpoints = {name: getattr(alert, name) for name in ENDPOINT_FIELDS}
            writer.writerow(
                features_by_name(alert.features)
                | endpoints
                | {
                    LABEL: CATEGORY_LABEL[category],
                    DIFFICULTY: 0,
                    "category": category,
                    "scenario": "analyst",
                    "family": category,
                    "run": f"{alert.agent_id}-{day}",
                }
            )
            rows += 1
    return rows
