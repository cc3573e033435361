"""AuthVisualizer driven as a learner would, against live AUTH exchanges with lab servers."""

from __future__ import annotations

import asyncio
import base64
import threading

import pytest

import smtplab
from smtplab.auth import MECHANISMS
from smtplab.widgets import AuthVisualizer

USERS = {"alice": "wonderland"}  # the lab's fake credentials
SECRETS = (
    "wonderland",
    base64.b64encode(b"wonderland").decode(),
    base64.b64encode(b"\0alice\0wonderland").decode(),
)


def logged_in(mechanism: str, password: str = "wonderland", **options: object) -> smtplab.Transcript:
    """The client's transcript of a real login to a lab server that allows AUTH in plain text."""
    options.setdefault("auth_require_tls", False)
    with smtplab.start_server(auth=USERS, name="visualised", **options) as server:
        with smtplab.SyncClient(server) as client:
            client.ehlo()
            client.login("alice", password, mechanism=mechanism)
    return client.transcript


def shown_text(view: AuthVisualizer) -> str:
    return view.headline.value + view.table.value


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_is_shown_masked_until_revealed(mechanism):
    view = AuthVisualizer(logged_in(mechanism))
    try:
        assert view.exchange.mechanism == mechanism and view.shown == len(view.steps)
        masked = shown_text(view)
        assert f"AUTH {mechanism}" in masked and "accepted (235)" in masked and "alice" in masked
        assert not any(secret in masked for secret in SECRETS) and "hidden: tick" in masked

        view.reveal.value = True  # the learner ticks the box
        revealed = shown_text(view)
        assert "hidden: tick" not in revealed
        if mechanism == "PLAIN":
            assert "\\0alice\\0wonderland" in revealed and SECRETS[2] in revealed
        elif mechanism == "LOGIN":
            assert "User Name\\0" in revealed and "Password\\0" in revealed and SECRETS[1] in revealed
        else:  # CRAM-MD5: the password is nowhere on the wire, even revealed
            assert "wonderland" not in revealed and "HMAC-MD5(key=password" in revealed
            assert view.exchange.digest(reveal_secrets=True) in revealed
        assert not view.errors
    finally:
        view.close()


def test_cram_md5_hmac_is_worked_out_from_the_typed_password():
    view = AuthVisualizer(logged_in("CRAM-MD5"), reveal_secrets=True)
    try:
        view.password.value = "wonderland"
        computed = next(row for row in view.steps if row.sender == "computed")
        assert "gives the digest the client sent" in computed.meaning
        assert view.exchange.digest(reveal_secrets=True) in computed.decoded
        assert "gives the digest the client sent" in view.table.value

        view.password.value = "guess"
        assert "does not give the digest" in view.table.value and "535" in view.table.value

        view.reveal.value = False
        assert "guess" not in view.table.value and "does not give the digest" in view.table.value
        assert "must keep the password" in view.table.value  # why the server stores it
    finally:
        view.close()


def test_stepping_through_an_exchange_one_line_at_a_time():
    view = AuthVisualizer(logged_in("LOGIN"), step=1)
    try:
        assert view.shown == 1 and "step 1 of 6" in view.position.value
        assert view.back_button.disabled and not view.next_button.disabled
        assert "Predict" in view.table.value and "server sends" in view.table.value  # what comes next
        assert view.table.value.count("smtplab-auth-step ") == 1

        view.next_button.click()
        view.next_button.click()
        assert view.shown == 3 and view.table.value.count("smtplab-auth-step ") == 3
        view.back_button.click()
        assert view.shown == 2 and not view.back_button.disabled

        view.all_button.click()
        assert view.shown == 6 and view.next_button.disabled and view.all_button.disabled
        assert "Predict" not in view.table.value
        for _ in range(2):
            view.back_button.click()
        assert view.shown == 4
        for _ in range(3):
            view.next_button.click()
        assert view.shown == 6 and view.next_button.disabled
    finally:
        view.close()


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_log_in_button_talks_to_the_server_and_shows_the_exchange(tls, mechanism):
    with smtplab.start_server(auth=USERS, tls=tls, name="visualised") as server:
        view = AuthVisualizer(server=server, password="wonderland")
        try:
            assert "press Log in" in view.headline.value
            view.mechanism.value = mechanism
            view.login_button.click()  # no running loop here: done on return
            assert view.logged_in.is_set() and view.last_reply.code == 235
            assert view.last_future.result() is view.last_reply
            assert view.exchange.mechanism == mechanism and view.exchange.tls
            assert f"AUTH {mechanism} inside TLS: accepted (235)" in view.headline.value
            assert server.auth.successes == {"alice": 1}
            assert view.client.transcript is view.transcript
            assert not any(secret in shown_text(view) for secret in SECRETS)
        finally:
            view.close()


def test_log_in_shows_the_refusals_that_teach():
    with smtplab.start_server(auth=USERS, tls="starttls", name="visualised") as server:
        view = AuthVisualizer(server=server, password="guess")
        try:
            view.login_button.click()
            assert view.last_reply.code == 535 and "refused (535)" in view.headline.value
            assert "wrong" in view.table.value

            view.password.value = "wonderland"
            view.login_button.click()  # a second exchange, on a new connection
            assert view.last_reply.code == 235 and server.auth.failures == {"alice": 1}
        finally:
            view.close()
    with pytest.warns(smtplab.AuthWithoutTLSWarning, match="538"):  # AUTH only inside TLS, which it lacks
        no_tls = smtplab.start_server(auth=USERS, name="no-tls")
    with no_tls as server:
        view = AuthVisualizer(server=server, password="wonderland")
        try:
            view.mechanism.value = "PLAIN"
            view.login_button.click()
            assert view.last_reply.code == 538 and "crossed the wire anyway" in view.table.value
        finally:
            view.close()


def test_several_exchanges_can_be_chosen_from():
    with smtplab.start_server(auth=USERS, auth_require_tls=False, name="visualised") as server:
        with smtplab.SyncClient(server) as client:
            client.ehlo()
            client.login("alice", "guess", mechanism="PLAIN")
            view = AuthVisualizer(client.transcript)
            try:
                assert view.choice.layout.display == "none" and "refused (535)" in view.headline.value
                client.login("alice", "wonderland", mechanism="CRAM-MD5")  # observed: a new exchange appears
                assert len(view.exchanges) == 2 and view.choice.layout.display is None
                assert view.exchange.mechanism == "CRAM-MD5"  # the newest is shown
                view.choice.value = 0
                assert view.exchange.mechanism == "PLAIN" and "refused (535)" in view.headline.value
            finally:
                view.close()


def test_a_transcript_without_auth_says_so_and_errors_land_in_the_widget():
    with smtplab.start_server(name="visualised") as server:
        with smtplab.SyncClient(server) as client:
            client.ehlo()
        view = AuthVisualizer(client.transcript)
        assert "No AUTH exchange" in view.headline.value and view.table.value == ""
        view.close()
        view = AuthVisualizer(server=server, password="wonderland")
        try:
            server.stop()
            view.login_button.click()  # must not raise into ipywidgets
            assert isinstance(view.errors[-1], smtplab.LabConnectionRefusedError)
            assert "LabConnectionRefusedError" in view.error_line.value
            assert view.logged_in.is_set() and view.last_reply is None and not view.login_button.disabled
        finally:
            view.close()


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match=r"client\.transcript"):
        AuthVisualizer(smtplab.Client(host="127.0.0.1", port=25))
    with pytest.raises(ValueError, match="step must be 1 or more"):
        AuthVisualizer(step=0)
    view = AuthVisualizer()
    try:
        assert "No transcript yet" in view.headline.value
        assert view.children[0].layout.display == "none"  # no server: no Log in row
        with pytest.raises(RuntimeError, match=r"server=server"):
            view.login()
    finally:
        view.close()


def test_in_a_kernel_the_login_runs_on_the_loop_and_the_view_follows():
    """Inside a running loop Log in is a task; the lines the client records reach the view there."""

    async def scenario() -> None:
        with smtplab.start_server(auth=USERS, tls="starttls", name="visualised") as server:
            view = AuthVisualizer(server=server, password="wonderland")
            try:
                loop_thread = threading.get_ident()
                drawn: list[int] = []
                view.table.observe(lambda change: drawn.append(threading.get_ident()), names="value")
                view.mechanism.value = "LOGIN"
                view.login_button.click()
                assert not view.logged_in.is_set()  # scheduled, not done yet
                reply = await asyncio.wait_for(asyncio.wrap_future(view.last_future), 10)
                assert reply.code == 235 and view.logged_in.is_set()
                assert view.exchange.mechanism == "LOGIN" and "accepted (235)" in view.headline.value
                assert drawn and set(drawn) == {loop_thread}
            finally:
                view.close()

    asyncio.run(scenario())
