"""Why this verdict: a stored connection's explanation (pipelines.explain), an htmx fragment the
group page loads when the analyst asks, so that listing a group stays fast."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from alerts import queries
from dashboard.dependencies import AlertStore, Analyst
from dashboard.rendering import TEMPLATES

router = APIRouter()


def explained(alert: dict[str, Any]) -> dict[str, Any]:
    """The explanation's lines of a stored alert, or why there is none (its model version gone
    from the registry, the registry unreachable, features the model cannot read)."""
    from mlflow.exceptions import MlflowException

    from pipelines.explain import explain

    try:
        found = explain(alert["model_version"], alert["features"], alert["category"])
    except MlflowException as err:
        return {"error": f"model version {alert['model_version']}: {err.message}"}
    except (OSError, KeyError, ValueError, TypeError) as err:
        return {"error": f"{type(err).__name__}: {err}"}
    return {"lines": found.lines()}


@router.get("/alerts/{alert_id}/why", response_class=HTMLResponse)
def why(request: Request, engine: AlertStore, analyst: Analyst, alert_id: int) -> Response:
    alert = queries.alert(engine, alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    context = explained(alert) | {"alert_id": alert_id, "user": analyst}
    return TEMPLATES.TemplateResponse(request, "_why.html", context)
