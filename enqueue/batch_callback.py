"""OpenRouter's callback when an upstream batch of the discounted lane ends
(``main.py:batchcallback``): ``POST <callback URL>?b=<batch>&g=<group>&t=<token>``. Genuine only
with a token the group gave OpenRouter (``promptq.batches.discount.genuine``); then the group is
polled at once. Idempotent (the poll's task is named after the group's polls), and never
trusted for content: the body is not read, the poll reads the batch from OpenRouter."""

from __future__ import annotations

import logging
import re
from typing import Mapping

from promptq.batches.discount_flow import DiscountFlow

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def callback(method: str, args: Mapping[str, str], *, flow: DiscountFlow) -> bool:
    """Whether the call was genuine (and the group's next poll made immediate)."""
    batch_id, group, token = (str(args.get(k) or "") for k in ("b", "g", "t"))
    if method != "POST" or not (_ID.match(batch_id) and _ID.match(group) and _ID.match(token)):
        return False
    genuine = flow.callback(batch_id, group, token)
    if not genuine:
        log.warning("batch callback for %s upstream %s refused: not a token of it", batch_id, group)
    return genuine
