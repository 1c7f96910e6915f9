"""Guarantee: with ``shell = true`` a template value is never parsed by the shell.

Each template of a shell command becomes a positional parameter of ``sh -c`` (``"${1}"``,
``${1}`` inside double quotes, ``'"${1}"'`` inside single quotes): the value is handed to
the shell as data, so wherever the author put the template (bare, inside "…", inside '…',
inside $(…)) it is one piece of literal text and nothing in it runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..test_cli_helpers import invoke

HOSTILE = [
    "$(touch {m})",
    "`touch {m}`",
    "x; touch {m}",
    "x | touch {m}",
    "x\ntouch {m}",
    "x && touch {m} #",
    "'; touch {m}; echo '",
    '"; touch {m}; echo "',
    "\\'; touch {m}; #",
    "${{IFS}}touch${{IFS}}{m}",
    "* ? [a-z] ~",
    "",
]

# (script, what printf prints for a value v): the template bare, inside the author's
# double quotes, inside their single quotes, inside a command substitution, in a list argv
CONTEXTS = {
    "bare": ("printf '%s' {v}", "{v}"),
    "double": ("printf '%s' \"<{v}>\"", "<{v}>"),
    "single": ("printf '%s' '<{v}>'", "<{v}>"),
    "substitution": ("printf '%s' \"$(printf '%s' '<{v}>')\"", "<{v}>"),
    "two": ("printf '%s|%s' {v} \"{v}\"", "{v}|{v}"),
}


def _spec(tmp_path: Path, argv: str) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(f"[tasks.t]\nargv = {argv}\nshell = true\n")
    return spec


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_value_is_one_piece_of_text(tmp_path: Path, hostile: str, context: str) -> None:
    marker = tmp_path / "pwned"
    value = hostile.format(m=marker)
    script, expected = CONTEXTS[context]
    spec = _spec(tmp_path, '"""' + script.replace("{v}", "{value}").replace("\\", "\\\\") + '"""')
    r = invoke("run", spec, "--quiet", "--var", f"value={value}")
    assert r.exit_code == 0, r.stderr
    out = r.json()["results"]["t"]["value"]["stdout"]
    want = expected.replace("{v}", value)
    assert out == (want.rstrip("\n") if context == "substitution" else want)
    assert not marker.exists()


def test_a_list_argv_with_a_shell_is_one_script(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = _spec(tmp_path, '["printf", "%s", "{value}", "|", "tr", "a-z", "A-Z"]')
    r = invoke("run", spec, "--quiet", "--var", f"value=ab; touch {marker}")
    assert r.exit_code == 0, r.stderr
    assert r.json()["results"]["t"]["value"]["stdout"] == f"AB; TOUCH {str(marker).upper()}"
    assert not marker.exists()


def test_a_result_is_a_parameter_too(tmp_path: Path) -> None:
    """A value read from another task's result, filled when the task is admitted."""
    marker = tmp_path / "pwned"
    (tmp_path / "shell_src.py").write_text(
        f"def hostile():\n    return {{'cmd': \"'$(touch {marker})'\"}}\n"
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[tasks.src]\ncall = "shell_src:hostile"\n\n'
        "[tasks.t]\nargv = \"printf '%s' '[{tasks.src.value.cmd}]'\"\nshell = true\n"
    )
    r = invoke("run", spec, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert r.json()["results"]["t"]["value"]["stdout"] == f"['$(touch {marker})']"
    assert not marker.exists()


def test_a_secret_is_a_parameter_and_stays_redacted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    secret = f"k3y'$(touch {marker})'"
    spec = _spec(tmp_path, '"printf \'%s\' \\"${env:FJ_SHELL_SECRET}\\""')
    r = invoke("run", spec, "--quiet", env={"FJ_SHELL_SECRET": secret})
    assert r.exit_code == 0, r.stderr
    assert r.json()["results"]["t"]["value"]["stdout"] == "***"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("\"printf '%s' {value!raw}\"", "tasks.t.argv: !raw is for a URL"),
        ("\"printf '%s' \\\\{value}\"", "tasks.t.argv: a template right after a backslash"),
    ],
    ids=["raw", "backslash"],
)
def test_what_cannot_be_a_parameter_is_a_spec_error(
    tmp_path: Path, argv: str, message: str
) -> None:
    r = invoke("run", _spec(tmp_path, argv), "--quiet", "--var", "value=x")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert f"spec.toml:2: {message}" in r.stderr
