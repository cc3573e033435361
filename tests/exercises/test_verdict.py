"""Verdict: words as well as colour, a plain-text form, and a JSON form the grader reads back."""

from __future__ import annotations

import json

import pytest

from smtplab.exercises import MIME_TYPE, Verdict

PASSED = Verdict("03.2", "Say EHLO", True, "the server heard EHLO and answered 250")
NOT_YET = Verdict(
    "03.2",
    "Say EHLO",
    False,
    "the server heard HELO <b>",
    hint="EHLO asks for the extensions; HELO does not.",
    mistake="helo",
    evidence=("-> HELO <b>", "<- 250 smtplab.test"),
)


def test_text_says_passed_or_not_yet_in_words():
    assert str(PASSED).splitlines() == ["[Passed] 03.2 Say EHLO", "  the server heard EHLO and answered 250"]
    text = str(NOT_YET)
    assert text.startswith("[Not yet] 03.2 Say EHLO\n")
    assert "  Hint: EHLO asks for the extensions; HELO does not." in text
    assert "    -> HELO <b>" in text
    assert repr(NOT_YET) == "<Verdict 03.2 Not yet (helo): 'the server heard HELO <b>'>"


def test_html_is_a_box_with_words_and_escaped_text():
    passed, not_yet = PASSED._repr_html_(), NOT_YET._repr_html_()
    assert "<b" in passed and ">Passed</b>" in passed and "smtplab-verdict-passed" in passed
    assert ">Not yet</b>" in not_yet and "smtplab-verdict-not-yet" in not_yet
    assert "<b>Hint:</b> EHLO asks" in not_yet
    assert "HELO &lt;b&gt;" in not_yet and "HELO <b>" not in not_yet.replace("<b>Hint", "")
    assert "<details><summary>What happened</summary>" in not_yet


def test_mimebundle_carries_the_machine_readable_form():
    bundle = NOT_YET._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html", MIME_TYPE}
    data = json.loads(json.dumps(bundle[MIME_TYPE]))  # JSON all the way, as in a notebook file
    assert Verdict.from_json(data) == NOT_YET
    assert Verdict.from_json(PASSED.to_json()) == PASSED


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"exercise": "00.1"},
        {"exercise": "00.1", "passed": "yes"},
        {"exercise": "00.1", "passed": True, "evidence": 3},
    ],
)
def test_from_json_refuses_what_is_not_a_verdict(data):
    with pytest.raises(ValueError, match="not a verdict"):
        Verdict.from_json(data)


def test_long_evidence_is_shortened_for_display():
    verdict = Verdict(
        "00.1", "t", False, "m", hint="h", mistake="k", evidence=tuple(f"line {n}" for n in range(100))
    )
    text = str(verdict)
    assert "line 29" in text and "line 30" not in text and "… 70 more lines" in text
    assert len(verdict.to_json()["evidence"]) == 100  # the gradebook keeps it whole
