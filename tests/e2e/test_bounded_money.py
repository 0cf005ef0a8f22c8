"""Issue 28's money cases, tried through the callables on the local stack as an attacker would:
what a start reserves is measured on the very body its worker sends (tools and schemas
included; a PDF at its model's whole context), the upstream is told the price the reservation
used (``provider.max_price``), and a batch's shared params neither escape the reservation nor
cost the callable a validation per item. The local upstream lists every model at $1 / $2 per
million tokens with a 128,000-token context."""

from __future__ import annotations

import time
import uuid

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from documents import body_bytes, job_of

from promptq.contract import BATCHES, EXECUTIONS, JobField
from promptq_client.api import CallError
from waiting import wait_for

pytestmark = pytest.mark.stack

PROMPT_PRICE, COMPLETION_PRICE, CONTEXT = 1e-6, 2e-6, 128_000


def tools(n: int = 12, size: int = 50_000) -> list[dict]:
    """``n`` tools of about ``size`` bytes each: ~600 KB of prompt tokens upstream."""
    return [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object", "description": "x" * size}}} for i in range(n)]


def test_tools_are_reserved_as_the_prompt_they_are(client, make_user):
    """600 KB of tools with max_tokens 1: reserved as the 128,000-token context they fill (it was
    2 bytes), so a budget of $0.05 refuses it, naming the budget."""
    user = make_user("tools", limits={"dailyBudgetUsd": 0.05})
    with pytest.raises(CallError) as info:
        client.start(user, prompt="hi", model="openai/gpt-4o-mini", params={"max_tokens": 1, "tools": tools()})
    assert (info.value.status, info.value.reason) == ("RESOURCE_EXHAUSTED", "daily_budget")
    worst = float(info.value.message.split("may cost up to $")[1].split(";")[0])
    assert worst == pytest.approx(CONTEXT * PROMPT_PRICE + 1 * COMPLETION_PRICE, abs=1e-6)


def test_a_pdf_by_url_is_reserved_at_its_models_whole_context(client, make_user, db, paused_queue):
    user = make_user("pdf", limits={"dailyBudgetUsd": 1.0})
    pdf = {"type": "file", "file": {"filename": "paper.pdf", "file_data": "https://example.com/paper.pdf"}}
    execution_id = client.start(
        user,
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": [{"type": "text", "text": "summarize"}, pdf]}],
        params={"max_tokens": 10},
    )
    job = job_of(db, execution_id)
    assert job[JobField.RESERVED_USD] == pytest.approx(CONTEXT * PROMPT_PRICE + 10 * COMPLETION_PRICE, abs=1e-9)
    client.cancel(user, execution_id)


def test_the_upstream_is_told_the_price_the_reservation_used(client, make_user, db, upstream):
    """Routing (``provider.order``/``sort``, ``:nitro``) may not pick an endpoint dearer than what
    was reserved: the body carries ``provider.max_price``, the lower of the caller's own and the
    listed price, and keeps the caller's other routing fields."""
    user = make_user("ceiling", limits={"dailyBudgetUsd": 1.0})
    marker = uuid.uuid4().hex[:8]
    provider = {"order": ["openai"], "sort": "throughput", "max_price": {"completion": 5}}  # looser than what is reserved
    execution_id = client.start(user, prompt=f"ceiling {marker}", model="openai/gpt-4o-mini:nitro", params={"max_tokens": 5, "provider": provider})
    wait_for(lambda: client.get(execution_id)["status"] == "succeeded", 60, "succeeded")
    [sent] = upstream.requests_for(marker)
    assert sent["params"]["provider"] == {
        "order": ["openai"],
        "sort": "throughput",
        "max_price": {"completion": 2.0, "prompt": 1.0, "request": 0.0, "image": 0.0},
    }
    assert job_of(db, execution_id)[JobField.RESERVED_BODY_BYTES] == body_bytes(job_of(db, execution_id))


def test_a_batch_reserves_every_items_share_of_its_shared_tools(client, make_user, db):
    """Tools in a batch's params are prompt in every item: 5 items × the context each, over a $0.5
    budget, refused before anything is written."""
    user = make_user("batchtools", limits={"dailyBudgetUsd": 0.5})
    items = [{"customId": f"c{i}", "prompt": f"item {i}"} for i in range(5)]
    with pytest.raises(CallError) as info:
        client.start_batch(user, items, model="openai/gpt-4o-mini", params={"max_tokens": 1, "tools": tools()})
    assert (info.value.status, info.value.reason) == ("RESOURCE_EXHAUSTED", "daily_budget")
    for collection in (BATCHES, EXECUTIONS):
        assert not list(db.collection(collection).where(filter=FieldFilter("ownerUid", "==", user.uid)).stream()), "nothing written"


def test_a_megabyte_batch_is_refused_on_its_size_in_well_under_a_second_of_work(client, make_user):
    """300 items inheriting 600 KB of tools would store 180 MB of jobs: refused on the raw
    request's size before any item (or the tools) is validated. It took the callable 540 s."""
    user = make_user("megabatch")
    items = [{"customId": f"c{i}", "prompt": f"item {i}"} for i in range(300)]
    began = time.monotonic()
    with pytest.raises(CallError) as info:
        client.start_batch(user, items, model="openai/gpt-4o-mini", params={"max_tokens": 1, "tools": tools()})
    took = time.monotonic() - began
    assert (info.value.status, info.value.field) == ("INVALID_ARGUMENT", "items") and "stored with every item" in info.value.message
    print(f"a 1 MB start_batch refused in {took:.2f} s")  # figures in docs/RELIABILITY.md; not a timed assertion
