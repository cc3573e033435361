"""Tests for smtplab._aiosmtplib: recording aiosmtplib's wire, DATA as data, hanging up at once."""

from __future__ import annotations

import aiosmtplib
import pytest

from smtplab import _aiosmtplib
from tests.conftest import run


async def connected(server) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False, timeout=5)
    await smtp.connect()
    return smtp


def test_record_reports_every_write_and_every_reply_in_order(lab_server):
    events: list[tuple[str, object]] = []

    async def session() -> None:
        smtp = await connected(lab_server)
        _aiosmtplib.record(
            smtp,
            written=lambda data: events.append(("written", data)),
            replied=lambda response: events.append(("replied", response.code)),
        )
        try:
            await smtp.execute_command(b"EHLO", b"me.test")
            await smtp.execute_command(b"MAIL FROM:<a@example.test>")
            await smtp.execute_command(b"RCPT TO:<b@example.test>")
            await _aiosmtplib.send_data(smtp, b"Subject: x\n\n.hi", timeout=5)
        finally:
            _aiosmtplib.hang_up(smtp)

    run(session())
    assert events == [
        ("written", b"EHLO me.test\r\n"),
        ("replied", 250),
        ("written", b"MAIL FROM:<a@example.test>\r\n"),
        ("replied", 250),
        ("written", b"RCPT TO:<b@example.test>\r\n"),
        ("replied", 250),
        ("written", b"DATA\r\n"),
        ("replied", 354),
        ("written", b"Subject: x\r\n\r\n..hi\r\n.\r\n"),  # CRLF everywhere, the leading dot doubled
        ("replied", 250),
    ]
    assert lab_server.mailbox.wait_for(1)[0].raw == b"Subject: x\r\n\r\n.hi\r\n"


def test_a_refused_data_is_a_reply_not_an_exception(lab_server):
    replies: list[int] = []

    async def session() -> None:
        smtp = await connected(lab_server)
        _aiosmtplib.record(smtp, written=lambda data: None, replied=lambda r: replies.append(r.code))
        try:
            await smtp.execute_command(b"EHLO", b"me.test")
            await _aiosmtplib.send_data(smtp, b"too early", timeout=5)  # no MAIL, no RCPT: 503
        finally:
            _aiosmtplib.hang_up(smtp)

    run(session())
    assert replies == [250, 503]


def test_note_hello_tells_aiosmtplib_what_the_server_offers(lab_server):
    async def session() -> tuple[bool, list[str], dict[str, str]]:
        smtp = await connected(lab_server)
        try:
            response = await smtp.execute_command(b"EHLO", b"me.test")
            before = smtp.supports_extension("size")
            _aiosmtplib.note_hello(smtp, "EHLO", response)
            assert not before
            return (
                smtp.supports_extension("size"),
                _aiosmtplib.auth_mechanisms(smtp),
                _aiosmtplib.extensions(smtp),
            )
        finally:
            _aiosmtplib.hang_up(smtp)

    size, mechanisms, extensions = run(session())
    assert size and mechanisms == [] and "8bitmime" in extensions


@pytest.mark.server_options(auth={"alice": "wonderland"}, auth_require_tls=False)
def test_auth_mechanisms_are_upper_case(lab_server):
    async def session() -> list[str]:
        smtp = await connected(lab_server)
        try:
            _aiosmtplib.note_hello(smtp, "EHLO", await smtp.execute_command(b"EHLO", b"me.test"))
            return _aiosmtplib.auth_mechanisms(smtp)
        finally:
            _aiosmtplib.hang_up(smtp)

    assert sorted(run(session())) == ["CRAM-MD5", "LOGIN", "PLAIN"]


def test_hang_up_releases_the_socket_at_once(lab_server):
    async def session() -> aiosmtplib.SMTP:
        smtp = await connected(lab_server)
        transport = smtp.transport
        _aiosmtplib.hang_up(smtp)
        assert transport is not None and transport.is_closing() and not smtp.is_connected
        _aiosmtplib.hang_up(smtp)  # twice is harmless
        return smtp

    run(session())  # the autouse leak check fails the test if the socket were left open


def test_record_needs_a_connection():
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        _aiosmtplib.record(aiosmtplib.SMTP(), written=print, replied=print)
