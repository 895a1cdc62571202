"""The model server's /classify endpoint, seen from the agent: one request per batch.

Contract: POST {server}/classify with `Authorization: Bearer <token>`, the batch's id in
BATCH_HEADER and {"flows": [record, ...]}; the answer is {"model_version": "...", "results":
[verdict, ...]} in request order (records and verdicts: desy.records). What each answer means for
the batch is in the exceptions below; capture_agent.sender decides what to do with it.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import quote

import httpx

from desy.records import BATCH_HEADER, CLASSIFY_PATH, SOURCE_HEADERS, Record, Verdict


class ServerError(RuntimeError):
    """The server answered, but not with verdicts (a permanent error for that batch)."""


class BadRecords(ServerError):
    """The server rejected records of the batch (400): how many, and the indexes it named."""

    def __init__(self, message: str, invalid: int, indexes: set[int]) -> None:
        super().__init__(message)
        self.invalid, self.indexes = invalid, indexes


class Refused(RuntimeError):
    """The server refuses this agent (401/403), or its certificate cannot be verified: sending
    again cannot help until the operator fixes the token or the CA."""


class ClassifyClient:
    """Thin httpx client for POST CLASSIFY_PATH. The timeout stays well above the few seconds the
    server may wait for its store to commit a batch before answering."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        timeout: float = 15.0,
        ca_cert: Path | None = None,
        source: tuple[str, str] | None = None,
    ) -> None:
        """source: where this agent captures (interface or pcap file) and its log directory,
        told to the server with every request for the alert store (analysts' drill-down)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if source is not None:
            headers |= {
                name: quote(value) for name, value in zip(SOURCE_HEADERS, source, strict=True)
            }
        verify = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else True
        self.http = httpx.Client(
            base_url=server.rstrip("/"), headers=headers, timeout=timeout, verify=verify
        )

    def classify(self, flows: list[Record], batch_id: str) -> list[Verdict]:
        """Verdicts in request order, each with the model version that gave it added.

        Raises httpx.TransportError / httpx.HTTPStatusError (retryable: 5xx, 429), Refused,
        BadRecords or ServerError.
        """
        try:
            response = self.http.post(
                CLASSIFY_PATH, json={"flows": flows}, headers={BATCH_HEADER: batch_id}
            )
        except httpx.TransportError as err:
            if _certificate_error(err):
                raise Refused(f"cannot verify the server's certificate: {err}") from None
            raise
        status = response.status_code
        if status >= 500 or status == 429:
            response.raise_for_status()
        if status in (401, 403):
            raise Refused(f"the server refused this agent (HTTP {status}): check the token")
        if status == 400:
            raise _bad_records(response)
        if status != 200:
            raise ServerError(f"server refused the batch: HTTP {status}: {response.text[:300]}")
        try:
            body = response.json()
            results = body["results"]
            version = str(body.get("model_version", ""))
            verdicts = [dict(result, model_version=version) for result in results]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ServerError(
                f"server answered HTTP 200 without verdicts: {response.text[:300]}"
            ) from None
        if len(verdicts) != len(flows):
            raise ServerError(f"server answered {len(verdicts)} results for {len(flows)} flows")
        return verdicts

    def close(self) -> None:
        self.http.close()


def _certificate_error(err: Exception) -> bool:
    cause = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _bad_records(response: httpx.Response) -> ServerError:
    """BadRecords from a 400 naming the bad records, else a plain ServerError."""
    message = f"server rejected records: {response.text[:300]}"
    try:
        body = response.json()
        indexes = {int(error["loc"][1]) for error in body["detail"] if error["loc"][0] == "flows"}
        return BadRecords(message, int(body["invalid_records"]), indexes)
    except (ValueError, KeyError, IndexError, TypeError):
        return BadRecords(message, 0, set())


def retry_after(err: Exception) -> float:
    """The seconds a 503 or 429 answer asks to wait (its Retry-After), else 0."""
    if not isinstance(err, httpx.HTTPStatusError):
        return 0.0
    try:
        return float(err.response.headers.get("Retry-After", 0))
    except ValueError:
        return 0.0
