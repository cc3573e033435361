"""Tests for smtplab.hints: fixes as data, spelled for Python or for the command line."""

from __future__ import annotations

import pickle
import shlex

import pytest

from smtplab import hints
from smtplab.cli import _parser
from smtplab.errors import TLSMismatchError
from smtplab.hints import AUDIENCES, Fix, Hint, option, start_lab_server, trust_lab_ca


def test_a_hint_is_its_python_spelling_and_renders_for_the_command_line():
    hint = Hint("On this port use ", option("tls", "starttls"), ", or ", option("tls", None), ".")
    assert hint == "On this port use tls='starttls', or tls=None." and isinstance(hint, str)
    assert hint.render("python") == str(hint)
    assert hint.render("cli") == "On this port use --tls starttls, or no --tls option."


def test_a_part_with_nothing_to_say_to_one_audience_leaves_no_gap():
    hint = Hint("It failed.", Fix(" Pass mechanism='PLAIN' to see why.", ""), " Try again.")
    assert hint.render("cli") == "It failed. Try again."
    assert hint.render("python") == "It failed. Pass mechanism='PLAIN' to see why. Try again."


def test_an_exception_carrying_a_hint_is_shown_for_each_audience():
    error = TLSMismatchError(Hint("use ", option("tls", "implicit")))
    assert str(error) == "use tls='implicit'" and error.hint is error.args[0]
    assert hints.render(error, "cli") == "use --tls implicit"
    assert hints.render(ValueError("plain words"), "cli") == "plain words"
    assert hints.render("text", "cli") == "text"


def test_a_hint_survives_pickling_with_its_parts():
    hint = Hint("use ", option("port", 0))
    again = pickle.loads(pickle.dumps(hint))
    assert again == hint and again.render("cli") == "use --port 0"


def test_a_fix_inside_an_f_string_is_a_mistake_said_at_once():
    with pytest.raises(TypeError, match="pass it to Hint"):
        f"{option('tls', None)}"


@pytest.mark.parametrize(
    ("fix", "command"),
    [
        (option("tls", "starttls"), "send --port 25"),
        (option("tls", "implicit"), "send --port 25"),
        (option("port", 0), "serve"),
        (option("host", "localhost"), "send --port 25"),
        (option("cafile", "ca.pem"), "send --port 25"),
        (option("timeout", 30), "send --port 25"),
        (trust_lab_ca(default=True), "send --port 25"),
        (start_lab_server("starttls"), ""),
        (start_lab_server(), ""),
        (option("unix_socket", "~/.smtplab/lab.sock"), "serve"),
    ],
)
def test_every_command_line_spelling_is_accepted_by_the_real_parser(fix: Fix, command: str):
    words = shlex.split(fix.cli.split(" (")[0])  # the option, without the words around it
    if words[:1] == ["smtplab"]:
        words = words[1:]
    else:
        words = [*shlex.split(command), *words]
    parsed = _parser().parse_args(words)
    assert parsed.command in ("send", "serve")


def test_plain_text_is_leaving_tls_out():
    assert option("tls", None).cli == "no --tls option"
    assert _parser().parse_args(["send", "--port", "25"]).tls is None
    assert set(AUDIENCES) == {"python", "cli"}
