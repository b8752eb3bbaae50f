"""The API server's warnings (a deprecated API, a field it ignored): its `Warning` response
headers, read as client-go reads them (apimachinery's ParseWarningHeaders: `code agent "text"`,
optionally followed by a quoted date, several to a header separated by commas, the rest of a
header skipped once it is malformed) and each text of code 299 logged once, as client-go's
deduplicating warning writer does.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict

log = logging.getLogger(__name__)

SERVER_WARNING = 299
"""The warn-code kube-apiserver gives its warnings; client-go handles no other."""
REMEMBERED = 1024
"""Distinct texts remembered as logged (the least recently seen forgotten first)."""

_WARNING = re.compile(r'\s*(\d{3}) (\S+) "((?:[^"\\]|\\.)*)"(?: "[^"]*")?\s*(?:,|$)')
_ESCAPE = re.compile(r"\\(.)")


def parse(header: str) -> list[tuple[int, str, str]]:
    """The (code, agent, text) of each warning in a Warning header's value, up to the first
    malformed one."""
    warnings = []
    position = 0
    while position < len(header) and (found := _WARNING.match(header, position)):
        code, agent, text = found.groups()
        warnings.append((int(code), agent, _ESCAPE.sub(r"\1", text)))
        position = found.end()
    return warnings


class WarningLog:
    """Logs each server warning text once. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logged: OrderedDict[str, None] = OrderedDict()

    def log(self, header: str | None) -> None:
        """Log the new texts of a Warning header's value (None: no such header)."""
        for code, _, text in parse(header or ""):
            if code == SERVER_WARNING and text and self._first(text):
                log.warning("the API server warns: %s", text)

    def _first(self, text: str) -> bool:
        with self._lock:
            if text in self._logged:
                self._logged.move_to_end(text)
                return False
            self._logged[text] = None
            if len(self._logged) > REMEMBERED:
                self._logged.popitem(last=False)
            return True
