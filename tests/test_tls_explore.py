"""smtplab.tls_explore: every client mode × server mode × trust × name × path, run live against lab servers."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Iterable

import pytest

import smtplab
from smtplab.tls import TLS_MODES, default_lab_tls
from smtplab.tls_explore import (
    BOUNDARY_HANDSHAKE_FAILED,
    BOUNDARY_TLS_STARTS,
    CLIENT_MODES,
    MESSAGE,
    WRONG_NAME,
    Attempt,
    Combination,
    TLSGrid,
)

# What any client and lab server here negotiate (TLS 1.3 wherever OpenSSL has it).
TLS_VERSION = "TLSv1.3" if ssl.HAS_TLSv1_3 else "TLSv1.2"
AT_ONCE = 8  # attempts running together in the whole-grid tests
# A client that waits for a greeting from an implicit-TLS server waits until its timeout,
# whatever the timeout: these run with a short one, every other attempt with a long one.
SILENT_TIMEOUT = 0.2
TALKING_TIMEOUT = 15.0


def waits_for_a_greeting(combination: Combination) -> bool:
    return combination.server == "implicit" and combination.client != "implicit"


def expected(combination: Combination, *, auth_in_clear: bool) -> str:
    """What each combination must give, worked out from the rules, not from the code under test."""
    client, server = combination.client, combination.server

    def over_tls() -> str:
        if combination.trust == "none":
            return f"encrypted, {TLS_VERSION}, NOT verified"
        if combination.trust == "system" or combination.name == "wrong-name":
            return "failed: certificate refused"
        return f"encrypted, {TLS_VERSION}"

    def in_clear(downgraded: bool = False) -> str:
        words = "plain text" + (", downgraded" if downgraded else "")
        return words + (", password readable" if auth_in_clear else "")

    if server == "implicit":
        return over_tls() if client == "implicit" else "failed: no greeting (timed out)"
    if client == "implicit":
        return "failed: TLS mismatch"  # the server answers the TLS hello in plain text
    if server is None:
        return "failed: TLS mismatch" if client == "starttls" else in_clear()
    if client is None:
        return in_clear()
    if combination.proxy:  # STARTTLS deleted from the EHLO reply
        return "stopped: STARTTLS was removed" if client == "starttls" else in_clear(downgraded=True)
    return over_tls()


def run_all(grid: TLSGrid, combinations: Iterable[Combination]) -> list[Attempt]:
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(combination: Combination) -> Attempt:
        async with gate:
            return await grid.attempt(combination)

    async def every() -> list[Attempt]:
        return await asyncio.gather(*(one(c) for c in combinations))

    return smtplab.aio.run(every(), timeout=300)


@pytest.mark.parametrize("server", TLS_MODES, ids=["plain-server", "starttls-server", "implicit-server"])
def test_the_whole_grid_gives_what_the_rules_say(server):
    combinations = [c for c in Combination.every() if c.server == server]
    assert len(combinations) == len(CLIENT_MODES) * 3 * 3 * 2
    with (
        TLSGrid(auth_in_clear=True, timeout=TALKING_TIMEOUT) as talking,
        TLSGrid(auth_in_clear=True, timeout=SILENT_TIMEOUT) as silent,
    ):
        attempts = run_all(talking, [c for c in combinations if not waits_for_a_greeting(c)])
        attempts += run_all(silent, [c for c in combinations if waits_for_a_greeting(c)])
    assert {a.combination for a in attempts} == set(combinations)
    wrong = {
        a.combination.label: (a.short, expected(a.combination, auth_in_clear=True))
        for a in attempts
        if a.short != expected(a.combination, auth_in_clear=True)
    }
    assert not wrong, wrong
    for attempt in attempts:
        check_consistent(attempt)


def check_consistent(attempt: Attempt) -> None:
    """What every attempt must say about itself, whatever its outcome."""
    combination = attempt.combination
    text = attempt.transcript_text()
    assert attempt.explanation, attempt
    assert (attempt.attacker is not None) == combination.proxy
    assert attempt.host == ("127.0.0.1" if combination.name == "127.0.0.1" else "localhost")
    assert f"host={attempt.host!r}, port={attempt.port}" in attempt.code
    if attempt.outcome == "encrypted":
        assert BOUNDARY_TLS_STARTS in text and attempt.delivered and attempt.logged_in
        boundary = attempt.tls_from
        assert boundary is not None and not any(line.tls for line in attempt.transcript[:boundary])
        assert all(line.tls for line in attempt.transcript[boundary:] if line.sender != "event")
        assert not attempt.password_in_clear and attempt.tls.cipher
        leaf, issuer = attempt.chain
        assert attempt.chain_source == "presented by the server on this connection"
        assert leaf.certificate.san == attempt.certificate_names and issuer.certificate.is_ca
        if attempt.attacker is not None:  # relayed blind: not one readable line of the session
            assert attempt.attacker.tls_relayed and not attempt.attacker.messages
            assert attempt.attacker_read[0].startswith("only ciphertext")
    if attempt.outcome == "plain":
        assert BOUNDARY_TLS_STARTS not in text and attempt.delivered and attempt.chain == ()
        assert attempt.password_in_clear == bool(attempt.logged_in)
    if attempt.outcome == "failed":
        assert not attempt.delivered and attempt.error_text
        assert attempt.explanation == str(attempt.error)  # the client's own words, true for this server
        assert attempt.handshake_failed == (BOUNDARY_HANDSHAKE_FAILED in text)
        if attempt.handshake_failed:  # OpenSSL's words, under smtplab's explanation
            assert attempt.error_below and "[SSL" in attempt.error_text
    if attempt.verified:
        assert attempt.safe and "NOT" not in attempt.headline
    if attempt.downgraded:
        assert not attempt.safe and attempt.attacker_read[0] == "the password (an AUTH line in plain text)"
        assert attempt.attacker.messages == [MESSAGE.encode()]
        assert attempt.attacker_changed == ["deleted '250-STARTTLS'"]


# -- the failures, read closely -----------------------------------------------------------------------


@pytest.fixture
def grid():
    with TLSGrid(timeout=TALKING_TIMEOUT) as made:
        yield made


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_the_lab_ca_and_a_listed_name_give_a_checked_tls_session(grid, name):
    attempt = grid.run("starttls", "starttls", name=name)
    assert attempt.short == f"encrypted, {TLS_VERSION}" and attempt.verified and attempt.safe
    assert attempt.headline.startswith(f"ENCRYPTED \u2014 {TLS_VERSION} with ")
    assert f"certificate checked against the lab CA for {name!r}" in attempt.headline
    leaf, issuer = attempt.chain
    assert leaf.certificate == default_lab_tls().server_certificate  # what the server presented
    assert leaf.note == f"you connected to {name!r}: listed"
    assert issuer.certificate == default_lab_tls().ca_certificate
    assert issuer.note == "in the client's trust store (the lab CA's client context)"
    assert attempt.tls.peer_hostname == name
    lines = attempt.transcript_text().splitlines()
    at = lines.index(BOUNDARY_TLS_STARTS)
    assert lines[at - 1].startswith("<- 220 ") and lines[at - 1].endswith("Ready to start TLS")
    assert lines[at + 1].startswith("** TLS started (STARTTLS)")


def test_a_wrong_name_is_a_trusted_certificate_for_another_host(grid):
    attempt = grid.run("implicit", "implicit", name="wrong-name")
    assert attempt.short == "failed: certificate refused" and attempt.host == "localhost"
    assert attempt.certificate_names == (WRONG_NAME,)
    assert "Hostname mismatch, certificate is not valid for 'localhost'" in attempt.error_text
    assert f"is for {WRONG_NAME}; you connected to 'localhost'" in attempt.explanation
    leaf, issuer = attempt.chain
    assert leaf.certificate.san == (WRONG_NAME,) and leaf.note == "you connected to 'localhost': NOT listed"
    assert leaf.certificate.issuer == issuer.certificate.subject  # the same lab CA signed it
    assert "client refused it during the handshake" in attempt.chain_source
    assert attempt.transcript_text().splitlines()[-1] == BOUNDARY_HANDSHAKE_FAILED


def test_the_system_cas_do_not_know_the_lab_ca(grid):
    attempt = grid.run("starttls", "starttls", trust="system")
    assert isinstance(attempt.error, smtplab.TLSCertificateError)
    assert "unable to get local issuer certificate" in attempt.error_text
    assert attempt.explanation == str(attempt.error)  # the client's own words, true for this server
    assert "does not trust the authority" in attempt.explanation
    assert attempt.chain[1].note == "NOT in the system's trust store: this CA exists only inside this lab"
    assert "client = smtplab.Client(host='localhost'" in attempt.code and "tls_context" not in attempt.code


def test_validate_certs_false_connects_and_says_what_it_gives_away(grid):
    attempt = grid.run("implicit", "implicit", trust="none", name="wrong-name")
    assert (
        attempt.short == f"encrypted, {TLS_VERSION}, NOT verified"
        and not attempt.verified
        and not attempt.safe
    )
    assert "certificate NOT checked" in attempt.headline
    assert "a man in the middle presenting a certificate of its own" in attempt.explanation
    assert [entry.note.split(":")[0] for entry in attempt.chain] == [
        "not compared with 'localhost'",
        "never looked at",
    ]
    assert ", validate_certs=False)" in attempt.code


def test_implicit_tls_against_a_starttls_port(grid):
    attempt = grid.run("implicit", "starttls")
    assert isinstance(attempt.error, smtplab.TLSMismatchError) and attempt.handshake_failed
    assert "WRONG_VERSION_NUMBER" in attempt.error_text
    assert "you connected with implicit TLS" in attempt.explanation and attempt.chain == ()


def test_a_plain_client_waits_for_an_implicit_greeting_until_its_timeout():
    with TLSGrid(timeout=SILENT_TIMEOUT) as silent:
        attempt = silent.run(None, "implicit")
        through = silent.run(None, "implicit", proxy=True)
    assert isinstance(attempt.error, smtplab.ClientTimeoutError) and not attempt.handshake_failed
    assert through.attacker_read == ["nothing: not a byte crossed it either way"]  # TLS never began
    assert attempt.error_text.startswith("ClientTimeoutError: no greeting from localhost:")
    assert (
        "on that port is one: it speaks implicit TLS" in attempt.explanation
        and "try tls='implicit'" in attempt.explanation
    )


# -- the man in the middle -------------------------------------------------------------------------------


def test_an_opportunistic_client_is_downgraded_and_gives_away_the_password():
    with TLSGrid(auth_in_clear=True, timeout=TALKING_TIMEOUT) as grid:
        attempt = grid.run("if-offered", "starttls", proxy=True)
        server = grid.server("starttls")
        captured = server.mailbox.wait_for(1)[0]
    assert attempt.short == "plain text, downgraded, password readable" and attempt.downgraded
    assert captured.tls is None and captured.auth_user == "alice"
    record = attempt.attacker
    line = next(line for line in record.transcript if line.text.startswith("AUTH PLAIN"))
    assert base64.b64decode(line.text.split()[-1]) == b"\0alice\0wonderland"
    assert "AUTH PLAIN ********" in record.transcript.text()  # masked unless revealed
    assert "deleted that line from the EHLO reply" in attempt.explanation
    assert "Require TLS (tls='starttls')" in attempt.explanation
    assert 'if "starttls" in client.extensions:' in attempt.code
    assert not smtplab.running_proxies()  # the proxy lived for this attempt only


def test_a_client_that_requires_starttls_is_stopped_before_anything_secret():
    with TLSGrid(auth_in_clear=True, timeout=TALKING_TIMEOUT) as grid:
        attempt = grid.run("starttls", "starttls", proxy=True)
        assert grid.server("starttls").mailbox.received == 0
    assert attempt.short == "stopped: STARTTLS was removed" and attempt.safe
    assert attempt.headline.startswith("STOPPED SAFELY \u2014 TLSMismatchError: STARTTLS was missing")
    assert not attempt.error_below  # smtplab's own error, with nothing under it to add
    assert "STARTTLS-stripping attack" in attempt.explanation
    assert attempt.attacker_read == ["the greeting and the EHLO reply, nothing secret"]
    assert attempt.attacker_changed == ["deleted '250-STARTTLS'"]


def test_without_auth_in_clear_the_downgrade_still_gives_away_the_message():
    with TLSGrid(timeout=TALKING_TIMEOUT) as grid:
        attempt = grid.run("if-offered", "starttls", proxy=True)
    assert attempt.short == "plain text, downgraded" and attempt.logged_in is None
    assert attempt.attacker_read == [f"the whole message ({len(MESSAGE)} bytes, headers and body)"]


# -- the grid's record and its servers -------------------------------------------------------------------


def test_attempts_are_kept_and_tabled_by_trust_name_and_path(grid):
    first = grid.run("starttls", "starttls")
    grid.run("implicit", "implicit", trust="system")
    again = grid.run(Combination("starttls", "starttls"))
    assert grid.attempts[0] is first and grid.latest(first.combination) is again
    assert grid.tried() == [first.combination, Combination("implicit", "implicit", "system")]
    table = grid.table()
    assert len(table) == 12 and table[("starttls", "starttls")] is again
    assert table[("implicit", "implicit")] is None  # tried with another trust
    assert grid.table(trust="system")[("implicit", "implicit")].short == "failed: certificate refused"
    assert grid.latest(Combination(None, None)) is None


def test_servers_are_private_started_once_and_stopped_with_the_grid():
    smtplab.start_server(name="lab")  # the learner's own: never touched
    grid = TLSGrid(timeout=TALKING_TIMEOUT)
    grid.run("starttls", "starttls")
    grid.run("implicit", "starttls")
    grid.run("implicit", "implicit", name="wrong-name")
    names = sorted(server.name for server in grid.servers)
    assert names == [f"{grid.name}-implicit-wrong-name", f"{grid.name}-starttls"] and grid.running
    assert {s.name for s in smtplab.running_servers()} == {"lab", *names}
    grid.stop()
    grid.stop()
    assert not grid.running and [s.name for s in smtplab.running_servers()] == ["lab"]
    assert grid.run("starttls", "starttls").short == f"encrypted, {TLS_VERSION}"  # started again
    grid.stop()
    smtplab.stop_all()


def test_a_grid_may_use_its_own_lab_ca(lab_tls):
    with TLSGrid(lab_tls=lab_tls, timeout=TALKING_TIMEOUT) as grid:
        attempt = grid.run("implicit", "implicit")
        assert grid.wrong_name_tls.ca is lab_tls.ca
    assert attempt.chain[0].certificate == lab_tls.server_certificate
    assert "tls_context=lab_tls.client_context()" in attempt.code


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"client": "tls"}, "client must be one of None, 'starttls', 'if-offered', 'implicit'"),
        ({"server": "ssl"}, "Did you mean server='implicit'"),
        ({"trust": "lab"}, "trust must be one of 'lab-ca', 'system', 'none'"),
        ({"name": "example.com"}, "name must be one of 'localhost', '127.0.0.1', 'wrong-name'"),
    ],
)
def test_a_combination_names_what_it_cannot_be(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Combination(**{"client": None, "server": None, **fields})
    with pytest.raises(TypeError, match="proxy must be True or False"):
        Combination(None, None, proxy="yes")
    with pytest.raises(ValueError, match="timeout"):
        TLSGrid(timeout=0)


def test_no_context_is_built_per_attempt(grid, monkeypatch):
    grid.run("implicit", "implicit", trust="system")
    grid.run("implicit", "implicit", trust="none")
    built = []
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: built.append(1))
    grid.run("implicit", "implicit", trust="system")
    grid.run("implicit", "implicit", trust="none")
    assert built == []
