"""``/api/webhooks/endpoints``: the endpoints that receive signed event messages (docs/webhooks.md).

(``/api/webhooks/bounces`` is another thing: the incoming reports of a mail provider.)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from newsletter.services import webhooks
from newsletter.web.api.endpoint_schemas import (
    CreatedEndpoint,
    EndpointChange,
    EndpointOut,
    EndpointSecret,
    EndpointTest,
    NewEndpoint,
    RemovedEndpoint,
)
from newsletter.web.api.schemas import MAX_ID, Problem
from newsletter.web.state import State

router = APIRouter(prefix="/webhooks/endpoints")

EndpointId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No endpoint has this id."}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "description": "Not an http(s) URL, or an unknown event."}
}


@router.get("", response_model=list[EndpointOut], summary="List the webhook endpoints")
def list_endpoints(state: State) -> list[EndpointOut]:
    return [EndpointOut.of(endpoint) for endpoint in webhooks.endpoints(state.database)]


@router.post(
    "",
    response_model=CreatedEndpoint,
    status_code=201,
    responses=INVALID,
    summary="Register a webhook endpoint (the answer holds its signing secret)",
)
def add_endpoint(body: NewEndpoint, state: State) -> CreatedEndpoint:
    created = webhooks.add(
        state.database,
        url=body.url,
        events=None if body.events is None else [event.value for event in body.events],
        description=body.description,
        now=state.clock(),
    )
    return CreatedEndpoint(endpoint=EndpointOut.of(created.endpoint), secret=created.secret)


@router.get(
    "/{endpoint_id}",
    response_model=EndpointOut,
    responses=NOT_FOUND,
    summary="One webhook endpoint, with its state and queue",
)
def get_endpoint(endpoint_id: EndpointId, state: State) -> EndpointOut:
    return EndpointOut.of(webhooks.endpoint(state.database, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=EndpointOut,
    responses={**NOT_FOUND, **INVALID},
    summary="Change a webhook endpoint; enabled=true also sends what waits in its queue",
)
def change_endpoint(endpoint_id: EndpointId, body: EndpointChange, state: State) -> EndpointOut:
    changed = webhooks.change(
        state.database,
        endpoint_id,
        url=body.url,
        events=None if body.events is None else [event.value for event in body.events],
        description=body.description,
        enabled=body.enabled,
        now=state.clock(),
    )
    return EndpointOut.of(changed)


@router.delete(
    "/{endpoint_id}",
    response_model=RemovedEndpoint,
    responses=NOT_FOUND,
    summary="Remove a webhook endpoint and its queue",
)
def remove_endpoint(endpoint_id: EndpointId, state: State) -> RemovedEndpoint:
    return RemovedEndpoint(dropped=webhooks.remove(state.database, endpoint_id))


@router.get(
    "/{endpoint_id}/secret",
    response_model=EndpointSecret,
    responses=NOT_FOUND,
    summary="The signing secret of a webhook endpoint",
)
def endpoint_secret(endpoint_id: EndpointId, state: State) -> EndpointSecret:
    return EndpointSecret(secret=webhooks.secret(state.database, endpoint_id))


@router.post(
    "/{endpoint_id}/test",
    response_model=EndpointTest,
    responses=NOT_FOUND,
    summary="Post a signed webhook.test message to the endpoint now and report its answer",
)
def test_endpoint(endpoint_id: EndpointId, state: State) -> EndpointTest:
    result = webhooks.send_test(
        state.database, endpoint_id, timeout=state.settings.webhook_timeout, now=state.clock()
    )
    return EndpointTest(
        message_id=result.message_id,
        delivered=result.delivered,
        status=result.status,
        error=result.error,
    )
