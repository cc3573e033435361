"""Tests for smtplab.auth: PLAIN, LOGIN and CRAM-MD5 against a real aiosmtpd server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import smtplib
from collections.abc import Iterator
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from smtplab.auth import (
    MECHANISMS,
    CramMD5Mechanism,
    CramMD5Response,
    LabAuthenticator,
    NoCommonMechanismError,
    auth_cram_md5,
    choose_mechanism,
    cram_md5_response,
    decode_plain,
    login_prompts,
    plain_response,
)
from smtplab.tls import LabTLS, summarize
from tests.conftest import free_port, run

USER, PASSWORD = "alice", "wonderland"  # fake lab credentials
CLIENT_TIMEOUT = 5.0  # a hanging AUTH reply fails the test instead of blocking it
ASYNCIO_METHODS = {"PLAIN": "auth_plain", "LOGIN": "auth_login", "CRAM-MD5": "auth_crammd5"}


class Handler(CramMD5Mechanism):
    """A handler with CRAM-MD5 that records what the server knew about TLS at NOOP time."""

    def __init__(self) -> None:
        self.noop_tls: list[Any] = []

    async def handle_NOOP(self, server: SMTP, session: Any, envelope: Any, arg: str) -> str:
        self.noop_tls.append(summarize(session.ssl))
        return "250 OK"


@contextlib.contextmanager
def lab_server(**kwargs: Any) -> Iterator[Controller]:
    controller = Controller(
        kwargs.pop("handler", None) or Handler(),
        hostname="127.0.0.1",
        port=free_port(),
        ready_timeout=5,
        server_hostname="lab.test",
        **kwargs,
    )
    try:
        controller.start()
        yield controller
    finally:
        controller.stop(no_assert=True)


@pytest.fixture
def authenticator() -> LabAuthenticator:
    return LabAuthenticator({USER: PASSWORD})


@pytest.fixture
def plain_server(authenticator: LabAuthenticator) -> Iterator[Controller]:
    """AUTH over plain text: allowed here only so the mechanisms can be tested bare."""
    with lab_server(authenticator=authenticator, auth_require_tls=False) as controller:
        yield controller


def smtplib_auth(client: smtplib.SMTP, mechanism: str) -> tuple[int, bytes]:
    authobject = getattr(client, "auth_" + mechanism.lower().replace("-", "_"))
    return client.auth(mechanism, authobject)


# --------------------------------------------------------------------------- aiosmtplib


def test_server_advertises_all_mechanisms(plain_server: Controller) -> None:
    async def ehlo() -> set[str]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=plain_server.port, timeout=CLIENT_TIMEOUT)
        async with client:
            await client.ehlo()
            return set(client.esmtp_extensions["auth"].lower().split())

    assert run(ehlo()) == {"plain", "login", "cram-md5"}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiosmtplib_success(
    plain_server: Controller, authenticator: LabAuthenticator, mechanism: str
) -> None:
    async def login() -> Any:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=plain_server.port, timeout=CLIENT_TIMEOUT)
        async with client:
            await client.ehlo()
            return await getattr(client, ASYNCIO_METHODS[mechanism])(USER, PASSWORD)

    response = run(login())
    assert response.code == 235
    assert authenticator.successes == {USER: 1}
    assert authenticator.failures == {}
    attempt = authenticator.attempts[-1]
    assert (attempt.mechanism, attempt.username, attempt.success) == (mechanism, USER, True)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiosmtplib_wrong_password_gets_535_quickly(
    plain_server: Controller, authenticator: LabAuthenticator, mechanism: str
) -> None:
    async def login() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=plain_server.port, timeout=CLIENT_TIMEOUT)
        async with client:
            await client.ehlo()
            await getattr(client, ASYNCIO_METHODS[mechanism])(USER, "looking-glass")

    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as info:
        run(login())
    assert info.value.code == 535  # a reply, not a timeout: the authenticator always answers
    assert authenticator.failures == {USER: 1}
    assert authenticator.attempts[-1].reason.startswith("wrong password")


def test_aiosmtplib_unknown_user(plain_server: Controller, authenticator: LabAuthenticator) -> None:
    async def login() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=plain_server.port, timeout=CLIENT_TIMEOUT)
        async with client:
            await client.auth_crammd5("bob", PASSWORD)

    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as info:
        run(login())
    assert info.value.code == 535
    assert authenticator.failures == {"bob": 1}
    assert authenticator.attempts[-1].reason == "unknown user 'bob'"


# --------------------------------------------------------------------------- smtplib


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_smtplib_success(plain_server: Controller, authenticator: LabAuthenticator, mechanism: str) -> None:
    with smtplib.SMTP("127.0.0.1", plain_server.port, timeout=CLIENT_TIMEOUT) as client:
        client.ehlo()
        client.user, client.password = USER, PASSWORD
        code, _ = smtplib_auth(client, mechanism)
    assert code == 235
    assert authenticator.successes == {USER: 1}
    assert authenticator.attempts[-1].mechanism == mechanism


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_smtplib_wrong_password_gets_535(
    plain_server: Controller, authenticator: LabAuthenticator, mechanism: str
) -> None:
    with smtplib.SMTP("127.0.0.1", plain_server.port, timeout=CLIENT_TIMEOUT) as client:
        client.ehlo()
        client.user, client.password = USER, "looking-glass"
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            smtplib_auth(client, mechanism)
    assert info.value.smtp_code == 535
    assert authenticator.failures == {USER: 1}


def test_smtplib_login_prefers_cram_md5(plain_server: Controller, authenticator: LabAuthenticator) -> None:
    with smtplib.SMTP("127.0.0.1", plain_server.port, timeout=CLIENT_TIMEOUT) as client:
        code, _ = client.login(USER, PASSWORD)
    assert code == 235
    assert [a.mechanism for a in authenticator.attempts] == ["CRAM-MD5"]


def test_smtplib_login_failure_tries_every_mechanism(
    plain_server: Controller, authenticator: LabAuthenticator
) -> None:
    with smtplib.SMTP("127.0.0.1", plain_server.port, timeout=CLIENT_TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(USER, "looking-glass")
    # smtplib (like aiosmtplib.login) falls back to the next mechanism after a 535.
    assert [a.mechanism for a in authenticator.attempts] == ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert authenticator.failures == {USER: 3}


# --------------------------------------------------------------------------- protocol edges


def test_cram_md5_exchange_on_the_wire(plain_server: Controller) -> None:
    with smtplib.SMTP("127.0.0.1", plain_server.port, timeout=CLIENT_TIMEOUT) as client:
        client.ehlo()
        code, challenge_b64 = client.docmd("AUTH", "CRAM-MD5")
        assert code == 334
        challenge = base64.b64decode(challenge_b64)
        assert challenge.startswith(b"<") and challenge.endswith(b"@lab.test>")  # RFC 2195 §2
        code, _ = client.docmd(cram_md5_response(USER, PASSWORD, challenge_b64.decode()))
        assert code == 235


def test_cram_md5_challenges_are_unique(plain_server: Controller) -> None:
    challenges = set()
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", plain_server.port, timeout=CLIENT_TIMEOUT) as client:
            client.ehlo()
            code, challenge = client.docmd("AUTH", "CRAM-MD5")
            assert code == 334
            challenges.add(challenge)
            assert client.docmd("*")[0] == 501  # cancel (RFC 4954 §4)
    assert len(challenges) == 2


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (("AUTH", "CRAM-MD5 " + base64.b64encode(b"alice x").decode()), None),
        (("AUTH", "CRAM-MD5"), base64.b64encode(b"alice").decode()),
        (("AUTH", "CRAM-MD5"), base64.b64encode(b"alice not-a-digest").decode()),
        (("AUTH", "CRAM-MD5"), "%%%not base64%%%"),
    ],
    ids=["initial-response", "no-digest", "bad-digest", "bad-base64"],
)
def test_cram_md5_malformed_gets_501(
    plain_server: Controller, command: tuple[str, str], answer: str | None
) -> None:
    with smtplib.SMTP("127.0.0.1", plain_server.port, timeout=CLIENT_TIMEOUT) as client:
        client.ehlo()
        code, _ = client.docmd(*command)
        if answer is not None:
            assert code == 334
            code, _ = client.docmd(answer)
        assert code == 501
        assert client.noop()[0] == 250  # the session goes on


def test_cram_md5_without_authenticator_is_refused() -> None:
    # The legacy auth_callback cannot check CRAM-MD5: the mechanism says so instead of hanging.
    with lab_server(auth_require_tls=False) as controller:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=CLIENT_TIMEOUT) as client:
            client.ehlo()
            code, message = client.docmd("AUTH", "CRAM-MD5")
    assert code == 454
    assert b"authenticator" in message


class AttachedHandler:
    """A handler that gets CRAM-MD5 by attribute instead of by inheritance."""

    auth_cram_md5 = staticmethod(auth_cram_md5)


def test_mechanism_can_be_attached_to_any_handler(authenticator: LabAuthenticator) -> None:
    with lab_server(
        handler=AttachedHandler(), authenticator=authenticator, auth_require_tls=False
    ) as controller:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=CLIENT_TIMEOUT) as client:
            client.ehlo()
            assert "CRAM-MD5" in client.esmtp_features["auth"].split()
            assert client.login(USER, PASSWORD)[0] == 235
    assert authenticator.attempts[-1].mechanism == "CRAM-MD5"


# --------------------------------------------------------------------------- over STARTTLS


def test_auth_over_starttls_with_smtplib(lab_tls: LabTLS, authenticator: LabAuthenticator) -> None:
    handler = Handler()
    with lab_server(
        handler=handler, authenticator=authenticator, tls_context=lab_tls.server_context()
    ) as controller:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=CLIENT_TIMEOUT) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            assert not client.has_extn("auth")  # hidden before TLS (RFC 4954 §4)
            code, message = client.docmd("AUTH", "PLAIN " + plain_response(USER, PASSWORD))
            assert code == 538, message  # 5.7.11 Encryption required
            client.noop()
            client.starttls(context=lab_tls.client_context())
            client.ehlo()
            assert client.has_extn("auth")
            assert client.login(USER, PASSWORD)[0] == 235
            client.noop()
    assert authenticator.successes == {USER: 1}
    before, after = handler.noop_tls
    assert before is None
    assert after is not None and after.version in ("TLSv1.2", "TLSv1.3")
    assert after.san == lab_tls.hosts


def test_auth_over_starttls_with_aiosmtplib(lab_tls: LabTLS, authenticator: LabAuthenticator) -> None:
    async def login() -> int:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=controller.port,
            tls_context=lab_tls.client_context(),
            start_tls=True,
            timeout=CLIENT_TIMEOUT,
        )
        async with client:
            response = await client.login(USER, PASSWORD)
            return response.code

    with lab_server(authenticator=authenticator, tls_context=lab_tls.server_context()) as controller:
        assert run(login()) == 235
    assert authenticator.attempts[-1].mechanism == "CRAM-MD5"  # aiosmtplib's first choice


# --------------------------------------------------------------------------- authenticator


def call(auth: LabAuthenticator, mechanism: str, data: Any) -> AuthResult:
    return auth(None, None, None, mechanism, data)  # type: ignore[arg-type]


def test_authenticator_results_have_the_shape_aiosmtpd_needs(
    authenticator: LabAuthenticator,
) -> None:
    ok = call(authenticator, "PLAIN", LoginPassword(b"alice", b"wonderland"))
    assert (ok.success, ok.auth_data) == (True, USER)
    bad = call(authenticator, "LOGIN", LoginPassword(b"alice", b"wonderlan"))
    # handled=False makes aiosmtpd reply 535; handled=True would leave the client hanging.
    assert (bad.success, bad.handled) == (False, False)
    assert authenticator.successes == {USER: 1}
    assert authenticator.failures == {USER: 1}


def test_authenticator_is_not_a_coroutine_function(authenticator: LabAuthenticator) -> None:
    assert not asyncio.iscoroutinefunction(authenticator.__call__)
    assert not asyncio.iscoroutine(call(authenticator, "PLAIN", LoginPassword(b"a", b"b")))


def test_authenticator_rejects_odd_data(authenticator: LabAuthenticator) -> None:
    assert not call(authenticator, "PLAIN", LoginPassword(b"\xff", b"wonderland")).success
    assert not call(authenticator, "XOAUTH2", "token").success
    assert not call(authenticator, "PLAIN", None).success
    assert authenticator.successes == {}


def test_authenticator_cram_md5_data(authenticator: LabAuthenticator) -> None:
    challenge = b"<1.2@lab.test>"
    good = base64.b64decode(cram_md5_response(USER, PASSWORD, base64.b64encode(challenge)))
    login, digest = good.split(b" ")
    assert call(authenticator, "CRAM-MD5", CramMD5Response(login, challenge, digest)).success
    upper = CramMD5Response(login, challenge, digest.upper())
    assert call(authenticator, "CRAM-MD5", upper).success
    other = CramMD5Response(login, b"<3.4@lab.test>", digest)
    assert not call(authenticator, "CRAM-MD5", other).success
    assert "digest" not in repr(other)


def test_authenticator_users_and_repr(authenticator: LabAuthenticator) -> None:
    authenticator.add_user("bob", "builder")
    assert authenticator.users == ("alice", "bob")
    assert repr(authenticator) == "<LabAuthenticator users: alice, bob>"
    assert PASSWORD not in repr(authenticator)
    with pytest.raises(ValueError):
        authenticator.add_user("", "x")
    with pytest.raises(ValueError):
        authenticator.add_user("eve", "a\0b")
    call(authenticator, "PLAIN", LoginPassword(b"bob", b"builder"))
    authenticator.reset_counts()
    assert authenticator.successes == {} and authenticator.attempts == []


# --------------------------------------------------------------------------- client helpers


def test_plain_response_round_trip() -> None:
    encoded = plain_response(USER, PASSWORD)
    assert encoded == "AGFsaWNlAHdvbmRlcmxhbmQ="  # base64("\0alice\0wonderland")
    assert decode_plain(encoded) == ("", USER, PASSWORD)
    assert decode_plain(plain_response(USER, PASSWORD, authzid="queen")) == (
        "queen",
        USER,
        PASSWORD,
    )
    assert decode_plain(plain_response("émile", "naïve")) == ("", "émile", "naïve")


@pytest.mark.parametrize("bad", ["!!!", base64.b64encode(b"no separators").decode()])
def test_decode_plain_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_plain(bad)


def test_plain_response_rejects_nul() -> None:
    with pytest.raises(ValueError, match="NUL"):
        plain_response("ali\0ce", PASSWORD)


def test_cram_md5_response_matches_rfc_2195_example() -> None:
    challenge = base64.b64encode(b"<1896.697170952@postoffice.reston.mci.net>").decode()
    expected = base64.b64encode(b"tim b913a602c7eda7a495b4e6e7334d3890").decode()
    assert cram_md5_response("tim", "tanstaaftanstaaf", challenge) == expected
    assert cram_md5_response("tim", "tanstaaftanstaaf", "334 " + challenge) == expected
    assert cram_md5_response("tim", "tanstaaftanstaaf", challenge) == (
        aiosmtplib.auth.auth_crammd5_verify("tim", "tanstaaftanstaaf", challenge).decode()
    )


def test_login_prompts_cover_common_and_aiosmtpd_prompts() -> None:
    prompts = login_prompts()
    for text in ("Username:", "Password:", SMTP.AuthLoginUsernameChallenge, SMTP.AuthLoginPasswordChallenge):
        assert base64.b64encode(text.encode()).decode() in prompts
    assert "user name" in prompts["VXNlcm5hbWU6"]
    assert "password" in prompts["UGFzc3dvcmQ6"]


@pytest.mark.parametrize(
    ("offered", "tls", "expected"),
    [
        (["PLAIN", "LOGIN", "CRAM-MD5"], True, "PLAIN"),
        (["login", "cram-md5"], True, "LOGIN"),
        ("CRAM-MD5 XOAUTH2", True, "CRAM-MD5"),
        (["PLAIN", "LOGIN", "CRAM-MD5"], False, "CRAM-MD5"),
        (["LOGIN", "PLAIN"], False, "PLAIN"),
    ],
)
def test_choose_mechanism(offered: Any, tls: bool, expected: str) -> None:
    mechanism, reason = choose_mechanism(offered, tls=tls)
    assert mechanism == expected
    assert reason.startswith(expected)


def test_choose_mechanism_honours_preference() -> None:
    assert choose_mechanism(["PLAIN", "LOGIN"], "login") == (
        "LOGIN",
        "you asked for LOGIN and the server offers it",
    )
    with pytest.raises(NoCommonMechanismError, match="offers only PLAIN"):
        choose_mechanism(["PLAIN"], "CRAM-MD5")
    with pytest.raises(NoCommonMechanismError, match="XOAUTH2"):
        choose_mechanism(["PLAIN"], "XOAUTH2")


def test_choose_mechanism_without_common_ground() -> None:
    with pytest.raises(NoCommonMechanismError, match="STARTTLS"):
        choose_mechanism([])
    with pytest.raises(NoCommonMechanismError) as info:
        choose_mechanism(["XOAUTH2", "GSSAPI"])
    assert isinstance(info.value, ValueError)


def test_login_response_is_the_base64_of_each_answer():
    from smtplab.auth import login_response

    assert login_response("alice") == "YWxpY2U="
    assert login_response("wonderland") == "d29uZGVybGFuZA=="
