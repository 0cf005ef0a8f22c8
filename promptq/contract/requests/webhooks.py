"""What the webhook callables accept (``enqueue.webhooks``). Pure; no I/O."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptq.contract.requests.request import DocId
from promptq.contract.webhooks import EventType

MAX_URL_CHARS = 2048  # an endpoint's URL (promptq.domain.webhook_urls checks it too)

# EventType's values (a test holds them together).
EventName = Literal["execution.succeeded", "execution.failed", "execution.cancelled", "batch.completed", "batch.cancelled", "batch.failed"]


class EndpointRequest(BaseModel):
    """``create_webhook_endpoint``: where to POST, which events (default: all), and whether the
    execution events of batch items go there too."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(min_length=1, max_length=MAX_URL_CHARS)
    events: list[EventName] | None = Field(None, min_length=1, max_length=len(EventType))
    batchItems: bool = False

    @field_validator("events")
    @classmethod
    def _distinct(cls, events: list[str] | None) -> list[str] | None:
        if events is not None and len(set(events)) != len(events):
            raise ValueError("each event at most once")
        return events


class EndpointRef(BaseModel):
    """``delete_webhook_endpoint``, ``rotate_webhook_secret``: which endpoint."""

    model_config = ConfigDict(extra="forbid", strict=True)

    endpointId: DocId
