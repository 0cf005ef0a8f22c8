"""Log probabilities, for a request with ``logprobs: true``: each content token's entry in its
chunk's ``choices[0].logprobs.content`` (and the whole answer's in a non-streamed one), OpenAI's
shape: ``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}``, with
``top_logprobs`` alternatives (0 unless asked; the first is the token itself). Deterministic:
a function of the token. No I/O."""

from __future__ import annotations

from typing import Any, Sequence


def asked(body: dict[str, Any]) -> int | None:
    """The alternatives a body asks for per token (None: no log probabilities)."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and not isinstance(top, bool) and 0 <= top <= 20 else 0


def _one(token: str, rank: int) -> dict[str, Any]:
    return {"token": token, "logprob": -round(0.01 * (len(token) % 7) + 0.5 * rank, 4), "bytes": list(token.encode())}


def entries(tokens: Sequence[str], top: int | None) -> list[dict[str, Any]] | None:
    """The entries of these content tokens (None when not asked)."""
    if top is None:
        return None
    found = []
    for token in tokens:
        alternatives = [_one(token if rank == 0 else f"{token.strip() or token}~{rank}", rank) for rank in range(top)]
        found.append({**_one(token, 0), "top_logprobs": alternatives})
    return found


def choice_logprobs(tokens: Sequence[str], top: int | None) -> dict[str, Any] | None:
    """A choice's ``logprobs`` (None when not asked, as OpenRouter sends it)."""
    found = entries(tokens, top)
    return None if found is None else {"content": found, "refusal": None}
