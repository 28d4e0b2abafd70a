"""The cache's codec: ``loads`` reads what the standard decoder reads, and fails where it fails."""

from __future__ import annotations

import json

import pytest

from kit.cache.base import dumps, loads

TEXTS = [
    '{"a":[1,{"b":null}],"c":"é"}',
    '"x"',
    "3",
    "1.5e3",
    "null",
    " {}",  # whitespace the fast path does not skip: the full decoder reads it
    "[1] \n",
    "",
    " ",
    '{"a":1}x',
    '{"a":1}{"b":2}',
    '{"a":',
    "[1,]",
]


def _read(read, text):
    try:
        return "value", read(text)
    except json.JSONDecodeError as exc:
        return exc.msg, exc.pos


@pytest.mark.parametrize("text", TEXTS)
def test_loads_reads_and_fails_as_the_standard_decoder(text):
    expected = _read(json.JSONDecoder().decode, text)
    assert _read(loads, text) == expected
    assert _read(loads, text.encode()) == expected


def test_dumps_then_loads_round_trips():
    value = {"id": 7, "name": "Ünïcode \u2028", "tags": ["a", "b"], "ratio": 0.25, "none": None, "ok": True}
    assert loads(dumps(value)) == value
