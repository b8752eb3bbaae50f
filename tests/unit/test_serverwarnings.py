"""Unit tests for client.serverwarnings: Warning headers read as client-go reads them,
each text logged once."""

from __future__ import annotations

import pytest

from ssa_controller.client import serverwarnings
from ssa_controller.client.serverwarnings import WarningLog, parse


@pytest.mark.parametrize(("header", "expected"), [
    ('299 - "one"', [(299, "-", "one")]),
    ('299 - "a, b", 299 kube-apiserver "c"', [(299, "-", "a, b"), (299, "kube-apiserver", "c")]),
    (r'299 - "say \"hi\" \\ there"', [(299, "-", 'say "hi" \\ there')]),
    ('299 - "dated" "Sat, 25 Aug 2012 23:34:45 GMT", 199 - "other"',
     [(299, "-", "dated"), (199, "-", "other")]),
    ('299 - "fine", nonsense, 299 - "lost"', [(299, "-", "fine")]),
    ("299 - unquoted", []),
    ("", []),
])
def test_warnings_are_parsed_as_client_go_parses_them(header: str,
                                                      expected: list[tuple[int, str, str]]) -> None:
    assert parse(header) == expected


def test_each_text_of_code_299_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    warnings = WarningLog()
    with caplog.at_level("WARNING", logger="ssa_controller.client.serverwarnings"):
        warnings.log('299 - "old API", 199 - "not the server\'s", 299 - ""')
        warnings.log('299 - "old API", 299 - "new"')
        warnings.log(None)
    assert [r.getMessage() for r in caplog.records] == [
        "the API server warns: old API", "the API server warns: new"]


def test_the_texts_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(serverwarnings, "REMEMBERED", 2)
    warnings = WarningLog()
    with caplog.at_level("WARNING", logger="ssa_controller.client.serverwarnings"):
        for text in ("a", "b", "a", "c", "b", "a"):  # c pushes b out, then b pushes a out
            warnings.log(f'299 - "{text}"')
    assert [r.getMessage()[-1] for r in caplog.records] == ["a", "b", "c", "b", "a"]
