"""Load for the model server. Bodies (whole flow records, benchmarks/flows.py) are encoded once, so
the client spends its CPU on HTTP only.

Batch1000: 1000 flows per request, back to back (see benchmarks/serving.sh). Single-flow latency
is measured open-loop by benchmarks/latency.py instead: locust's own client adds milliseconds.
"""

from __future__ import annotations

import json
import os

from locust import HttpUser, task

from benchmarks.flows import AGENT_HEADERS, records

BATCH = json.dumps({"flows": records(1000)}).encode()
HEADERS = {"Content-Type": "application/json", **AGENT_HEADERS}
if os.environ.get("DESY_API_TOKEN"):
    HEADERS["Authorization"] = f"Bearer {os.environ['DESY_API_TOKEN']}"


class Batch1000(HttpUser):
    @task
    def classify(self) -> None:
        self.client.post("/classify", data=BATCH, headers=HEADERS)
