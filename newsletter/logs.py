"""Logging for the command line: plain lines or JSON objects on standard error."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

#: The web paths whose last part is a signed personal token (see newsletter.web.pages).
_TOKEN_PATH = re.compile(r"(/(?:unsubscribe|confirm|preferences|resubscribe)/)[^\s/?#\"'<>]+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the token of every personal link replaced: a log line must not open one."""
    return _TOKEN_PATH.sub(r"\1" + REDACTED, text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message without tokens (uvicorn's access log puts the path in its args)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it).

    Every line, tracebacks included, goes out with personal-link tokens redacted.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(redact(self.format(record)) + "\n")
        except Exception:  # noqa: BLE001 - logging must never break the program
            self.handleError(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(verbosity: int, fmt: str = "text") -> None:
    """WARNING by default, INFO with -v, DEBUG with -vv. Safe to call more than once."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if isinstance(handler, StderrHandler)]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    # The access log names each request's path; redact it at the source, whatever handles it.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(item, RedactTokens) for item in access.filters):
        access.addFilter(RedactTokens())
    # The scheduler library narrates every job run at INFO; keep that for -vv.
    logging.getLogger("apscheduler").setLevel(logging.WARNING if verbosity < 2 else logging.DEBUG)
