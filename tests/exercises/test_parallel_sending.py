"""The parallel-sending exercises: the notebook's solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import ssl

import aiosmtplib

import smtplab
from smtplab.exercises import check
from smtplab.exercises.parallel_sending import RETRY_CASES
from smtplab.parallel import should_retry
from tests.exercises.harness import Wrong, exercise_tests

# -- 07.1: the fastest number of connections under a cap -----------------------------------------


def prints_the_cap(server):
    print(server.limits.max_connections)


def written_in(server):
    return 4


def one_more_for_luck(server):
    return server.limits.max_connections + 1


async def knocks_four_times(server):
    probes = [smtplab.Client(server) for _ in range(4)]
    greetings = []
    for probe in probes:
        try:
            greetings.append(await probe.connect())
        except aiosmtplib.SMTPConnectResponseError:
            pass
    for probe in probes:
        await probe.close()
    return len(greetings)


def the_cap_as_text(server):
    return str(server.limits.max_connections)


# -- 07.2: the retry rule -----------------------------------------------------------------------


def says_it_in_words(outcome):
    return "retry" if getattr(outcome, "code", 500) < 500 else "give up"


def reads_every_code(outcome):
    return 400 <= outcome.code < 500


def below_500(outcome):
    return getattr(outcome, "code", 500) < 500


def only_exceptions(outcome):
    return isinstance(outcome, Exception) and not isinstance(outcome, (ValueError, ssl.SSLError))


def every_refusal(outcome):
    code = getattr(outcome, "code", None)
    return code >= 400 if code is not None else isinstance(outcome, OSError)


def connect_errors_are_final(outcome):
    if isinstance(outcome, smtplab.Reply):
        return 400 <= outcome.code < 500
    if isinstance(outcome, aiosmtplib.SMTPConnectError):
        return False
    return isinstance(outcome, (ConnectionError, TimeoutError)) and not isinstance(
        outcome, smtplab.TLSMismatchError
    )


def codes_only(outcome):
    code = getattr(outcome, "code", None)
    return code is not None and 400 <= code < 500


def every_os_error(outcome):
    code = getattr(outcome, "code", None)
    if code is not None:
        return 400 <= code < 500
    return isinstance(outcome, (OSError, TimeoutError))


def every_exception(outcome):
    code = getattr(outcome, "code", None)
    if code is not None:
        return 400 <= code < 500
    return not isinstance(outcome, (ssl.SSLError, smtplab.TLSMismatchError))


WRONG_ANSWERS = {
    "07.1": [
        Wrong("no-number", prints_the_cap, "prints the number instead of returning it"),
        Wrong("no-number", the_cap_as_text, "returns the number as text"),
        Wrong("same-for-both", written_in, "the notebook's cap written in"),
        Wrong("more-than-cap", one_more_for_luck, "one more than the cap"),
        Wrong("fewer-than-cap", knocks_four_times, "knocks only four times"),
    ],
    "07.2": [
        Wrong("not-bool", says_it_in_words, "answers in words"),
        Wrong("crashed", reads_every_code, "reads .code of every outcome"),
        Wrong("retries-success", below_500, "anything below 500"),
        Wrong("ignores-4xx", only_exceptions, "retries exceptions only"),
        Wrong("retries-5xx", every_refusal, "every 4xx and 5xx"),
        Wrong("ignores-greeting", connect_errors_are_final, "a refused greeting is final"),
        Wrong("gives-up-on-drop", codes_only, "only outcomes with a code"),
        Wrong("retries-tls", every_os_error, "every OSError, TLS included"),
        Wrong("retries-bad-message", every_exception, "every exception but TLS"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "parallel_sending", WRONG_ANSWERS
)


def test_send_many_s_own_rule_passes_the_retry_exercise():
    verdict = check("07.2", should_retry)
    assert verdict.passed, verdict
    assert len({case[2] for case in RETRY_CASES}) >= 6  # the table covers every kind of outcome
