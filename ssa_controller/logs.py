"""Logging set-up: text or one JSON object per line, level from the config."""

from __future__ import annotations

import json
import logging
import sys
import time

from .config import LoggingConfig


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    for noisy in ("apscheduler", "urllib3", "tzlocal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
