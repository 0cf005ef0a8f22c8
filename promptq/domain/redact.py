"""Secrets never leave: the one filter every error message passes through on its way to a
document, a log line or a caller.

It removes the secrets this process knows (the OpenRouter key it was given, registered when
read) and anything shaped like a key (``sk-...``, ``Bearer ...``, Google API keys), because
providers echo keys back in their errors ("Incorrect API key provided: sk-or-...").
"""

from __future__ import annotations

import collections
import logging
import re
import threading

MASK = "[redacted]"
_KEY_SHAPED = re.compile(
    r"sk-[A-Za-z0-9][A-Za-z0-9_\-]{11,}"  # OpenRouter / OpenAI style keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{12,}=*"  # an Authorization header's value
    r"|AIza[0-9A-Za-z_\-]{30,}"  # Google API keys
)
_known: set[str] = set()
_users: collections.OrderedDict[str, None] = collections.OrderedDict()  # users' own keys, the most recent
USER_KEYS_KEPT = 1024
_lock = threading.Lock()


def register(secret: str | None, *, user: bool = False) -> None:
    """A secret this process holds: redacted wherever it appears, whatever its shape. Users'
    own keys (``user``) are remembered while recent (the last ``USER_KEYS_KEPT``): a worker
    may serve thousands of them, and each is also key-shaped."""
    if secret and len(secret) >= 8:
        with _lock:
            if not user:
                _known.add(secret)
                return
            _users[secret] = None
            _users.move_to_end(secret)
            while len(_users) > USER_KEYS_KEPT:
                _users.popitem(last=False)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted((*_known, *_users), key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _KEY_SHAPED.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's final message (and its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Redact every record handled by the root logger's handlers (or ``logger``'s)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
