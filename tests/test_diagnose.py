"""Tests for smtplab.diagnose: what an SSL error means, and the fix each explanation names."""

from __future__ import annotations

import asyncio
import ssl

import pytest

import smtplab
import smtplab.tls as tls_module
from smtplab.diagnose import exception_chain, explain_ssl_error
from smtplab.tls import LabTLS, describe_certificate
from tests.conftest import run
from tests.handshake import connect_error


@pytest.fixture
def lab(lab_tls: LabTLS) -> LabTLS:
    return lab_tls


def test_explain_implicit_tls_against_plain_port(lab: LabTLS) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 lab.test ESMTP\r\n")
        try:
            await writer.drain()
            await reader.read(100)
        except OSError:
            pass
        finally:
            writer.close()

    error, port = run(connect_error(None, lab.client_context(), on_server=greet))
    assert isinstance(error, ssl.SSLError)
    assert error.reason == "WRONG_VERSION_NUMBER"
    message = explain_ssl_error(error, host="127.0.0.1", port=port, expected_mode="implicit")
    assert f"127.0.0.1:{port}" in message
    assert "use tls='starttls'" in message.lower()
    assert "implicit-TLS port" in message
    # OpenSSL's own words, as openssl s_client and swaks print them, without the C source line
    assert "in plain text ([SSL: WRONG_VERSION_NUMBER] wrong version number):" in message


def test_explain_handshake_cut_short(lab: LabTLS) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    error, port = run(connect_error(None, lab.client_context(), on_server=hang_up))
    message = explain_ssl_error(error, host="::1", port=port, expected_mode="implicit")
    assert f"[::1]:{port} closed the connection" in message


def test_an_explained_error_explains_the_same_again(lab: LabTLS) -> None:
    # smtplab's TLSCertificateError is itself an SSLCertVerificationError, without OpenSSL's facts:
    # explaining it again reads them from the error it wraps.
    error, port = run(connect_error(lab.server_context(), ssl.create_default_context()))
    first = explain_ssl_error(error, host="localhost", port=port, expected_mode="implicit")
    try:
        raise smtplab.TLSCertificateError(first) from error
    except smtplab.TLSCertificateError as wrapped:
        again = explain_ssl_error(wrapped, host="localhost", port=port, expected_mode="implicit")
    assert again == first and "(unable to get local issuer certificate)" in again


def test_explain_unexpected_eof_error() -> None:
    error = ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:1006)")
    message = explain_ssl_error(error, host="localhost", port=8465, expected_mode="starttls")
    assert "closed the connection in the middle of the TLS handshake" in message
    assert "tls='implicit'" in message


def test_explain_wrapped_error_and_greeting_timeout() -> None:
    inner = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    try:
        try:
            raise inner
        except ssl.SSLError as exc:
            raise ConnectionError("Error connecting to localhost on port 8025") from exc
    except ConnectionError as outer:
        message = explain_ssl_error(outer, host="localhost", port=8025, expected_mode=True)
    assert "tls='starttls'" in message

    timeout = TimeoutError("Timed out waiting for server ready message")
    message = explain_ssl_error(timeout, host="localhost", port=8465, expected_mode=None)
    assert "no 220 greeting" in message and "tls='implicit'" in message


def test_explain_starttls_not_offered() -> None:
    error = Exception("SMTP STARTTLS extension not supported by server.")
    message = explain_ssl_error(error, host="localhost", port=8025, expected_mode="starttls")
    assert "does not offer STARTTLS" in message


def mismatch(asked: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(
        1, f"certificate verify failed: IP address mismatch, certificate is not valid for '{asked}'."
    )
    error.verify_code = 64
    error.verify_message = f"IP address mismatch, certificate is not valid for '{asked}'."
    return error


def test_a_hostname_mismatch_names_only_the_certificate_presented(
    lab: LabTLS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls_module, "_default", lab)  # a lab CA exists in this process
    message = explain_ssl_error(mismatch("10.0.0.7"), host="10.0.0.7", port=8025, expected_mode="starttls")
    assert "does not list that name; you connected to '10.0.0.7'" in message
    assert "localhost" not in message and "LabTLS" not in message  # not a lab server, as far as known

    presented = describe_certificate(lab.server_der)
    message = explain_ssl_error(mismatch("10.0.0.7"), host="10.0.0.7", port=25, certificate=presented)
    assert "is for localhost, 127.0.0.1, ::1; you connected to '10.0.0.7' (IP address mismatch)." in message
    assert "LabTLS.create(hosts=('localhost', '127.0.0.1', '::1', '10.0.0.7'))" in message  # a lab's
    assert message.render("cli").endswith("connect using one of the certificate's names (--host localhost).")


@pytest.mark.parametrize("error", [ValueError("odd"), Exception(), KeyboardInterrupt(), ssl.SSLError()])
def test_explain_never_raises(error: BaseException) -> None:
    message = explain_ssl_error(error, host="localhost", port=25, expected_mode="sideways")
    assert isinstance(message, str) and "localhost:25" in message


def test_exception_chain_follows_causes_and_contexts_once() -> None:
    inner = OSError("inner")
    outer = ValueError("outer")
    outer.__cause__ = outer.__context__ = inner
    inner.__context__ = outer  # a loop must not trap it
    assert exception_chain(outer) == [outer, inner]


def test_every_tls_hint_is_written_in_the_one_vocabulary() -> None:
    errors = [
        ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        TimeoutError("Timed out waiting for server ready message"),
        Exception("SMTP STARTTLS extension not supported by server."),
    ]
    for error in errors:
        for mode in (None, "starttls", "implicit"):
            message = explain_ssl_error(error, host="localhost", port=25, expected_mode=mode)
            assert "'none'" not in message and "tls=True" not in message, message
