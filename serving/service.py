"""The DeSy model server: BentoML service classifying flow records with the champion model.

Run with `desy serve` (or `bentoml serve serving.service:DesyNids`). Configuration from the
environment: MLFLOW_TRACKING_URI (default sqlite:///mlruns/mlflow.db), DESY_API_TOKEN (bearer
token for /classify), DESY_WORKERS (processes, default 1), DESY_MAX_BODY_BYTES (default 16 MiB), DESY_ACCESS_LOG=1
(a log line per request; off by default, it costs a third of a single-flow request's time).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Annotated

import bentoml
from bentoml.exceptions import ServiceUnavailable
from pydantic import Field

from desy import schema
from serving.guard import SERVED, Guard
from serving.model import Champion, load_champion
from serving.schemas import MAX_FLOWS, ClassifyResponse, FlowRecord

log = logging.getLogger("desy.serving")

FLOWS_CLASSIFIED = bentoml.metrics.Counter(
    name="desy_flows_classified_total", documentation="Flow records classified.")
ATTACKS = bentoml.metrics.Counter(
    name="desy_attacks_total", documentation="Flows classified as attacks, by category.", labelnames=["category"])
UNKNOWN_VALUES = bentoml.metrics.Counter(
    name="desy_unknown_categorical_total",
    documentation="Categorical values outside the training vocabulary (encoded as all-zero one-hot).",
    labelnames=["feature"])

_VOCABULARY = {name: frozenset(values) for name, values in schema.CATEGORICAL.items()}


@bentoml.service(
    name="desy_nids",
    workers=int(os.environ.get("DESY_WORKERS", "1")),
    traffic={"timeout": 30},
    logging={"access": {"enabled": os.environ.get("DESY_ACCESS_LOG", "0") == "1"}},
)
class DesyNids:
    """Loads models:/desy-nids@champion in the background; ready once it is loaded."""

    def __init__(self) -> None:
        self.champion: Champion | None = None
        self.load_error: str | None = None
        threading.Thread(target=self._load, name="desy-model-loader", daemon=True).start()

    def _load(self) -> None:
        try:
            self.champion = load_champion()
            SERVED["version"] = self.champion.version
        except Exception as err:  # reported by /readyz staying false and by the log
            self.load_error = str(err)
            log.error("cannot load the champion: %s", err)

    def __is_ready__(self) -> bool:
        return self.champion is not None

    @bentoml.api(route="/classify")
    def classify(self, flows: Annotated[list[FlowRecord], Field(max_length=MAX_FLOWS)]) -> ClassifyResponse:
        """Verdicts for a batch of flow records, in request order."""
        champion = self.champion
        if champion is None:
            raise ServiceUnavailable(self.load_error or "model still loading")
        rows = [tuple(flow.__dict__.values())[:41] for flow in flows]
        columns = dict(zip(schema.FEATURE_NAMES, zip(*rows))) if rows else {n: () for n in schema.FEATURE_NAMES}
        _count_unknown(columns)
        results = champion.classify(columns) if rows else []
        FLOWS_CLASSIFIED.inc(len(results))
        for result in results:
            if result["label"] == "attack":
                ATTACKS.labels(category=result["category"]).inc()
        return ClassifyResponse(model_version=champion.version, results=results)


def _count_unknown(columns: dict) -> None:
    for name, vocabulary in _VOCABULARY.items():
        unknown = sum(value not in vocabulary for value in columns[name])
        if unknown:
            UNKNOWN_VALUES.labels(feature=name).inc(unknown)


DesyNids.add_asgi_middleware(
    Guard, token=os.environ.get("DESY_API_TOKEN") or None,
    max_body=int(os.environ.get("DESY_MAX_BODY_BYTES", str(16 * 2**20))),
)
