"""The JSON line of a command's ok result is built without the encoder: byte for byte
what the encoder writes, for any text; any other value is left to the encoder."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forkjoin.cli._render import command_line, dumps

# any text a line, a command's stdout or its stderr can hold: surrogates included (what
# an undecodable byte becomes), and every character JSON escapes
TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF))


@given(line=TEXT, code=st.integers(-(2**40), 2**40), out=TEXT, err=TEXT)
def test_a_command_line_is_what_the_encoder_writes(
    line: str, code: int, out: str, err: str
) -> None:
    value = {"exit_code": code, "stdout": out, "stderr": err}
    text = command_line(line, value)
    assert text == dumps({"input": line, "status": "ok", "value": value})
    if not any("\ud800" <= c <= "\udfff" for c in line + out + err):  # valid JSON too
        assert json.loads(text)["value"] == value


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (None, {"exit_code": 0, "stdout": "", "stderr": ""}),  # no input line
        ("a", {"exit_code": True, "stdout": "", "stderr": ""}),  # a bool is not a code
        ("a", {"exit_code": 0, "stdout": b"", "stderr": ""}),
        ("a", {"exit_code": 0, "stdout": "", "stderr": "", "truncated": True}),
        ("a", {"exit_code": 0, "stdout": "", "other": ""}),
        ("a", ["exit_code", "stdout", "stderr"]),
    ],
)
def test_any_other_value_is_left_to_the_encoder(line: Any, value: Any) -> None:
    assert command_line(line, value) is None
