"""Logging set-up: text or one JSON object per line, level from the config.

In JSON, a line logged about an object carries it as controller-runtime's structured fields:
`controller`, `namespace`, `name` and, within a reconcile, `reconcileID` (one per reconcile).
`reconciling()` sets them for every line logged in its block (by this thread); `about()` gives
them to one line (`extra=`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

from .runtime.objectkey import ObjectKey
from .settings.config import LoggingConfig

OBJECT = "object"
"""The LogRecord attribute holding the object's fields."""
_reconciling: ContextVar[Mapping[str, str] | None] = ContextVar("reconciling", default=None)


def about(controller: str, key: ObjectKey) -> dict[str, dict[str, str]]:
    """`extra=` for a line about the object `key`."""
    return {OBJECT: {"controller": controller, "namespace": key.namespace, "name": key.name}}


@contextlib.contextmanager
def reconciling(controller: str, key: ObjectKey) -> Iterator[None]:
    """Lines logged in the block (in this thread) are about `key`, in a new reconcile."""
    token = _reconciling.set({**about(controller, key)[OBJECT], "reconcileID": str(uuid.uuid4())})
    try:
        yield
    finally:
        _reconciling.reset(token)


class _ObjectFields(logging.Filter):
    """Stamps each record with the fields of the reconcile it was logged in, unless it was
    given some (`extra=about(...)`). Runs in the logging thread, where the reconcile is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, OBJECT):
            setattr(record, OBJECT, _reconciling.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, the object's fields if any (see the
    module's docstring) and the exception, if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage(), **(getattr(record, OBJECT, None) or {})}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(_ObjectFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    for noisy in ("apscheduler", "urllib3", "tzlocal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
