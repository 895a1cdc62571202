"""The DeSy model server: BentoML service classifying flow records with the champion model.

Run with `desy serve` (or `bentoml serve serving.service:DesyNids`). Configuration:
MLFLOW_TRACKING_URI (default sqlite:///mlruns/mlflow.db) and the DESY_* settings, read once at
import (serving/settings.py): the bearer token for every path but health, metrics and the
OpenAPI document (or an agents file, serving/agent_tokens.py), workers, body and time limits,
the access log, the alert store (alerts/database.py; none without DESY_STORE_URL), HTTPS, the
webhook.

With a store, /classify answers once the store has committed the batch's verdicts: a 200 means
they are stored (a batch named by X-Desy-Batch is stored once however often it is sent).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future
from functools import partial
from typing import Any

import anyio.to_thread
import bentoml
from pydantic import ValidationError
from starlette.responses import JSONResponse

from alerts.database import engine_for
from alerts.store import Store
from desy import schema
from desy.records import BATCH_HEADER, CLASSIFY_PATH, model_columns
from serving.agent_tokens import TokenFile
from serving.guard import CURRENT_AGENT, CURRENT_BATCH, CURRENT_SOURCE, SERVED, Guard
from serving.http_limits import limit_headers
from serving.model import Champion, load_champion
from serving.notifier import Notifier
from serving.recorder import NotWritten, QueueFull, Recorder
from serving.schemas import (
    BadRecords,
    BadRequest,
    ClassifyRequest,
    ClassifyResponse,
    validate_flows,
)
from serving.settings import ServerSettings, read

log = logging.getLogger("desy.serving")


class _OneLineBadRequests(logging.Filter):
    """BentoML logs a request body it cannot validate with a full traceback at ERROR: one line
    at WARNING is enough for a client's mistake."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            record.msg, record.args = (
                "400 on %s: %s",
                (record.args[0] if record.args else "?", str(error).splitlines()[0]),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(_OneLineBadRequests())


SETTINGS = read(ServerSettings)
limit_headers(SETTINGS.header_timeout, SETTINGS.body_timeout)

FLOWS_CLASSIFIED = bentoml.metrics.Counter(
    name="desy_flows_classified_total", documentation="Flow records classified."
)
ATTACKS = bentoml.metrics.Counter(
    name="desy_attacks_total",
    documentation="Flows classified as attacks, by category.",
    labelnames=["category"],
)
UNKNOWN_VALUES = bentoml.metrics.Counter(
    name="desy_unknown_categorical_total",
    documentation="Categorical values outside the training vocabulary (encoded as all-zero one-hot).",
    labelnames=["feature"],
)

STORE_WRITTEN = bentoml.metrics.Counter(
    name="desy_store_verdicts_written_total",
    documentation="Verdicts written to the alert store (attacks stored, all counted per minute).",
)
STORE_DROPPED = bentoml.metrics.Counter(
    name="desy_store_verdicts_dropped_total",
    documentation="Verdicts not written to the alert store: it was down at shutdown.",
)
STORE_REFUSED = bentoml.metrics.Counter(
    name="desy_store_verdicts_refused_total",
    documentation="Verdicts the alert store refused (a value it cannot hold); the others stored.",
)

WEBHOOK_FAILED = bentoml.metrics.Counter(
    name="desy_webhook_groups_failed_total",
    documentation="Incidents (new or grown) the webhook could not be told about (after its retries).",
)

#: Batches of up to this many flows are classified on the event loop, larger ones in a thread.
INLINE_FLOWS = 16
_ONE_AT_A_TIME = anyio.CapacityLimiter(1)
_VOCABULARY = {name: frozenset(values) for name, values in schema.CATEGORICAL.items()}


def _recorder(settings: ServerSettings) -> Recorder | None:
    """The alert store's writer, if the settings name a store."""
    if not settings.store_url:
        return None
    return Recorder(
        Store(engine_for(settings.store_url), settings.incident_quiet_seconds),
        keep_normal=settings.store_all,
        retention_days=settings.store_retention_days,
        max_bytes=settings.store_max_mb << 20,
        on_written=STORE_WRITTEN.inc,
        on_dropped=STORE_DROPPED.inc,
        on_refused=STORE_REFUSED.inc,
        on_status=partial(SERVED.__setitem__, "store"),
        notifier=_notifier(settings),
    )


def _notifier(settings: ServerSettings) -> Notifier | None:
    """Webhook notifications of incidents, if the settings name a webhook."""
    if not settings.webhook_url:
        return None
    return Notifier(
        settings.webhook_url,
        interval=settings.webhook_interval,
        digest_interval=settings.webhook_digest_interval,
        on_failed=WEBHOOK_FAILED.inc,
    )


def _ssl(settings: ServerSettings) -> dict[str, Any]:
    """HTTPS when the settings name a certificate and its key."""
    certfile, keyfile = settings.ssl_certfile, settings.ssl_keyfile
    if certfile is None or keyfile is None:
        return {}
    return {"enabled": True, "certfile": str(certfile), "keyfile": str(keyfile)}


@bentoml.service(
    name="desy_nids",
    workers=SETTINGS.workers,
    traffic={"timeout": 30},
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML records an OpenTelemetry span for every request even when no exporter is set: a
    # tenth of a single-flow request's time. /classify is left untraced.
    tracing={"excluded_urls": [f"{CLASSIFY_PATH}$"]},
    ssl=_ssl(SETTINGS),
)
class DesyNids:
    """Loads models:/desy-nids@champion in the background; ready once it is loaded."""

    def __init__(self) -> None:
        self.champion: Champion | None = None
        self.load_error: str | None = None
        self.recorder = _recorder(SETTINGS)
        if not self._try_load(
            retry_in=1.0
        ):  # a worker that can load the model now serves only with it
            threading.Thread(target=self._load, name="desy-model-loader", daemon=True).start()

    @bentoml.on_shutdown
    def _close_store(self) -> None:
        """Write the verdicts still queued for the alert store before the worker exits."""
        if self.recorder is not None:
            self.recorder.close()

    def _load(self) -> None:
        """Load the champion in the background, retrying with backoff (1 s doubling to 60 s)
        while the registry is down, locked or has no champion; /readyz says why meanwhile."""
        delay = 1.0
        while True:
            time.sleep(delay)
            delay = min(delay * 2, 60.0)
            if self._try_load(retry_in=delay):
                return

    def _try_load(self, retry_in: float) -> bool:
        """One attempt at loading the champion; on failure, say why and when the next one is."""
        try:
            self.champion = load_champion()
        except Exception as err:  # noqa: BLE001 (any failure of the registry or the download: retry)
            self.load_error = str(err)
            SERVED["status"] = f"cannot load the champion (retrying in {retry_in:.0f} s): {err}"
            log.error("%s", SERVED["status"])
            return False
        SERVED["version"], SERVED["status"] = self.champion.version, "ready"
        # What is loaded by now (BentoML, MLflow, the model: ~300k objects) lives as long as the
        # worker: kept out of the cycle collector, whose full passes over it stalled a request
        # for 150-250 ms.
        gc.freeze()
        return True

    def __is_ready__(self) -> bool:
        return self.champion is not None

    @bentoml.api(route=CLASSIFY_PATH, input_spec=ClassifyRequest)
    async def classify(self, flows: list[Any]) -> ClassifyResponse:
        """Verdicts for a batch of flow records, in request order, once the store has committed
        them. A small batch (a fraction of a millisecond of work) is classified on the event
        loop: the hop to a thread was a sixth of a single-flow request. Larger ones run in a
        thread, one at a time per worker (as BentoML runs a synchronous API)."""
        if len(flows) <= INLINE_FLOWS:
            answer, stored = self._classify(flows)
        else:
            answer, stored = await anyio.to_thread.run_sync(
                self._classify, flows, limiter=_ONE_AT_A_TIME
            )
        return answer if stored is None else await _once_stored(answer, stored)

    def _classify(self, flows: list[Any]) -> tuple[JSONResponse, Future[None] | None]:
        """The answer, and the store's commit of the verdicts to wait for (None: no store)."""
        champion = self.champion
        if champion is None:
            return _unavailable(self.load_error or "model still loading"), None
        try:
            records = validate_flows(flows)
        except BadRecords as bad:
            log.warning(
                "400 on %s: %s of %d; first: %s", CLASSIFY_PATH, bad, len(flows), bad.errors[0]
            )
            body = BadRequest(
                error=f"{bad}; the first {len(bad.errors)} errors are in detail",
                detail=bad.errors,
                invalid_records=bad.invalid,
            )
            return JSONResponse(body.model_dump(), status_code=400), None
        agent = CURRENT_AGENT.get()
        if agent is not None:  # with an agents file, the token says who sent the records
            for record in records:
                record["agent_id"] = agent
        columns = model_columns(records)
        _count_unknown(columns)
        results = champion.classify(columns) if records else []
        FLOWS_CLASSIFIED.inc(len(results))
        stored = None
        if self.recorder is not None and results:
            try:
                stored = self.recorder.submit(
                    champion.version, records, results, CURRENT_SOURCE.get(), CURRENT_BATCH.get()
                )
            except QueueFull as full:
                return _unavailable(f"{full}: resend the batch later"), None
        attacks = Counter(result["category"] for result in results if result["label"] == "attack")
        for category, count in attacks.items():
            ATTACKS.labels(category=category).inc(count)
        # The verdicts are plain dicts already: serialised as they are, not rebuilt as models
        # (the annotation still documents the answer in the OpenAPI schema).
        return JSONResponse({"model_version": champion.version, "results": results}), stored


async def _once_stored(answer: JSONResponse, stored: Future[None]) -> JSONResponse:
    """The answer once the store committed its batch; a 503 if it did not within the store's
    wait (the batch stays queued: a resend with the same batch id is not stored twice)."""
    wait = SETTINGS.store_wait_seconds
    try:
        await asyncio.wait_for(asyncio.wrap_future(stored), wait)
    except TimeoutError:
        why = SERVED["store"] or "it is busy"
        return _unavailable(
            f"the alert store has not committed this batch within {wait:g} s ({why}); it "
            f"stays queued and is written once the store can be: resend it with the same "
            f"{BATCH_HEADER}"
        )
    except NotWritten as err:
        return _unavailable(str(err))
    return answer


def _unavailable(error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=503, headers={"Retry-After": "5"})


def _count_unknown(columns: dict) -> None:
    for name, vocabulary in _VOCABULARY.items():
        unknown = sum(value not in vocabulary for value in columns[name])
        if unknown:
            UNKNOWN_VALUES.labels(feature=name).inc(unknown)


DesyNids.add_asgi_middleware(
    Guard,
    token=SETTINGS.api_token,
    max_body=SETTINGS.max_body_mb << 20,
    agents=TokenFile(SETTINGS.agents_file) if SETTINGS.agents_file else None,
)
