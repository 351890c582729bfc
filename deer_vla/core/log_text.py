"""Text from outside (messages, files) made safe to put in a log line."""
from __future__ import annotations


def quoted(text: str, limit: int = 120) -> str:
    """``text`` as a quoted literal, control characters escaped (a ``"\\n[ERROR] ..."`` in a message cannot forge a
    log line, an ANSI escape cannot recolour the terminal), cut after ``limit`` characters with its length said."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def error_text(exc: BaseException) -> str:
    """An exception's message for a one-line error: a KeyError's without the quotes ``str()`` puts around it."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)
