"""The TLS explorer driven from Python as a learner would: pick with .value, press Run with .click()."""

from __future__ import annotations

import asyncio
import html
import re
import ssl

import pytest

import smtplab
from smtplab.tls import default_lab_tls
from smtplab.tls_explore import TLSGrid
from smtplab.widgets import TLSExplorer

# What any client and lab server here negotiate (TLS 1.3 wherever OpenSSL has it).
TLS_VERSION = "TLSv1.3" if ssl.HAS_TLSv1_3 else "TLSv1.2"
TIMEOUT = 15.0  # no combination here waits for a reply that never comes


def shown(widget) -> str:
    """What an HTML widget shows, as text: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", widget.value))


@pytest.fixture
def explorer():
    made = TLSExplorer(timeout=TIMEOUT)
    try:
        yield made
    finally:
        made.close()


def test_it_starts_empty_and_invites_a_prediction(explorer):
    assert "Nothing run yet" in shown(explorer.outcome) and "predict" in shown(explorer.outcome)
    assert shown(explorer.table).count("not tried") == 12
    assert "0 of 216 combinations tried" in shown(explorer.table)
    assert explorer.combination.client == "starttls" and explorer.combination.server == "starttls"
    assert not explorer.grid.servers  # nothing started before the first Run
    for part in ("client", "server", "trust", "name", "proxy", "run", "next", "outcome", "grid"):
        assert f"smtplab-tls-{part}" in str(explorer._dom_classes) or any(
            f"smtplab-tls-{part}" in child._dom_classes for child in explorer._owned_children()
        )


def test_run_shows_the_failure_its_meaning_and_the_boundary(explorer):
    explorer.client_mode.value = "implicit"
    explorer.server_mode.value = "starttls"
    assert shown(explorer.next_run) == "Run will try: " + explorer.combination.label
    assert "client implicit TLS \u2192 server STARTTLS (like port 587)" in shown(explorer.next_run)
    explorer.run_button.click()
    attempt = explorer.attempt
    assert attempt is not None and explorer.grid.attempts == [attempt] and not explorer.run_button.disabled
    outcome = shown(explorer.outcome)
    assert "FAILED \u2014 TLSMismatchError" in outcome and "WRONG_VERSION_NUMBER" in outcome
    assert "what it means: " + attempt.explanation in outcome
    assert f"client = smtplab.Client(host='localhost', port={attempt.port}, tls='implicit'" in outcome
    assert "the TLS handshake failed here" in shown(explorer.transcript)
    assert "No certificate" in shown(explorer.chain)
    grid = shown(explorer.table)
    assert "failed: TLS mismatch \u25c0 last run" in grid and "1 of 216" in grid
    assert "smtplab-tls-failed" in explorer.table.value  # the colour has words beside it


def test_a_checked_session_shows_version_cipher_chain_and_where_tls_began(explorer):
    attempt = explorer.run(client="starttls", server="starttls")
    assert f"ENCRYPTED \u2014 {TLS_VERSION} with" in shown(explorer.outcome)
    transcript = shown(explorer.transcript)
    assert (
        transcript.index("Ready to start TLS")
        < transcript.index("TLS starts here")
        < transcript.index("TLS started (STARTTLS)")
    )
    chain = shown(explorer.chain)
    lab = default_lab_tls()
    assert lab.server_certificate.sha256 in chain and lab.ca_certificate.sha256 in chain
    assert "localhost, 127.0.0.1, ::1" in chain and "EC secp256r1, 256 bits" in chain
    assert "you connected to 'localhost': listed" in chain and "\u2193 signed by" in chain
    assert "(itself: a root CA)" in chain
    assert "No man in the middle on this path" in shown(explorer.attacker)
    assert explorer.attacker_view.transcript is None
    assert f"encrypted, {TLS_VERSION} \u25c0 last run" in shown(explorer.table) and attempt.verified


def test_the_grid_follows_the_trust_name_and_path_chosen(explorer):
    explorer.run(client="implicit", server="implicit")
    explorer.trust.value = "system"
    grid = shown(explorer.table)
    assert "trusting the system's CAs" in grid and grid.count("not tried") == 12 and "1 of 216" in grid
    explorer.run_button.click()
    assert "failed: certificate refused \u25c0 last run" in shown(explorer.table)
    explorer.trust.value = "lab-ca"
    grid = shown(explorer.table)
    assert f"encrypted, {TLS_VERSION}" in grid and "\u25c0 last run" not in grid and "2 of 216" in grid


def test_a_wrong_name_and_the_names_it_lists(explorer):
    explorer.run(client="starttls", server="starttls", name="wrong-name")
    outcome = shown(explorer.outcome)
    assert (
        "Hostname mismatch" in outcome and "is for mail.example.test; you connected to 'localhost'" in outcome
    )
    chain = shown(explorer.chain)
    assert (
        "mail.example.test" in chain and "NOT listed" in chain and "refused it during the handshake" in chain
    )


def test_the_man_in_the_middle_tab_shows_what_it_read():
    explorer = TLSExplorer(auth_in_clear=True, timeout=TIMEOUT)
    try:
        attempt = explorer.run(client="if-offered", server="starttls", proxy=True)
        assert "PLAIN TEXT" in shown(explorer.outcome) and attempt.downgraded
        attacker = shown(explorer.attacker)
        assert (
            "the password (an AUTH line in plain text)" in attacker and "deleted '250-STARTTLS'" in attacker
        )
        view = explorer.attacker_view
        assert view.transcript is attempt.attacker.transcript
        assert "AUTH PLAIN ********" in shown(view.table)
        view.reveal.value = True  # on purpose, with the lab's fake credentials
        assert "AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=" in shown(view.table)
        assert "plain text, downgraded, password readable" in shown(explorer.table)

        explorer.run(client="starttls")
        assert "stopped: STARTTLS was removed" in shown(explorer.table)
        outcome = shown(explorer.outcome)
        assert "STOPPED SAFELY" in outcome and "the error:" not in outcome  # said once, not twice
        assert "smtplab-tls-safe" in explorer.table.value
        assert "It changed:" in shown(explorer.attacker) and "nothing secret" in shown(explorer.attacker)
    finally:
        explorer.close()
    assert not explorer.grid.running  # it made its grid, so closing stopped its servers


def test_a_failure_of_the_explorer_itself_is_shown_in_one_line(explorer, monkeypatch):
    def broken(combination):
        raise RuntimeError("the lab is on fire")

    monkeypatch.setattr(explorer.grid, "run", broken)
    explorer.run_button.click()
    assert isinstance(explorer.errors[-1], RuntimeError) and "the lab is on fire" in explorer.error_line.value
    assert not explorer.run_button.disabled
    with pytest.raises(RuntimeError, match="on fire"):  # called from code, it raises
        explorer.run()


def test_inside_a_running_loop_run_works_the_same():
    # A notebook cell runs inside the kernel's event loop; the attempt runs on smtplab's own.
    async def in_a_kernel() -> tuple[str, str]:
        explorer = TLSExplorer(timeout=TIMEOUT)
        try:
            explorer.choose(client="implicit", server="implicit")
            explorer.run_button.click()
            return explorer.attempt.short, shown(explorer.outcome)
        finally:
            explorer.close()

    short, outcome = asyncio.run(in_a_kernel())
    assert short == f"encrypted, {TLS_VERSION}" and "ENCRYPTED" in outcome


def test_a_given_grid_is_left_running_and_choose_checks_its_values():
    grid = TLSGrid(timeout=TIMEOUT)
    explorer = TLSExplorer(grid)
    try:
        explorer.run(client=None, server=None)
        assert explorer.client_mode.value == "plain" and grid.running
        with pytest.raises(ValueError, match="trust must be one of"):
            explorer.choose(trust="everyone")
        with pytest.raises(TypeError, match="runs on a TLSGrid"):
            TLSExplorer(grid="yes")
        explorer.close()
        assert grid.running  # not the explorer's to stop
        explorer.stop()
        assert not grid.running
    finally:
        grid.stop()
    assert not smtplab.running_servers()
