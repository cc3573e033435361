"""WireTap: a relay that keeps every byte both ways, holds the greeting back, and closes cleanly."""

from __future__ import annotations

import asyncio
import smtplib
import socket

import pytest

import smtplab
from smtplab import aio
from smtplab.exercises.tap import WireTap
from tests.conftest import open_fds


def test_it_relays_and_records_both_sides(lab_server):
    with WireTap(lab_server.address) as tap:
        with smtplib.SMTP(*tap.address) as client:
            client.sendmail("a@example.test", ["b@example.test"], "Subject: tapped\r\n\r\nhi\r\n")
    assert tap.address[0] == "127.0.0.1" and tap.address[1] != lab_server.port
    (connection,) = tap.connections
    assert connection.sent_by("client").startswith(b"ehlo ") and connection.sent_by("client").endswith(
        b"QUIT\r\n"
    )
    assert connection.sent_by("server").startswith(b"220 ") and b"221 " in connection.sent_by("server")
    assert not connection.spoke_before_greeting
    assert lab_server.mailbox.latest.subject == "tapped"
    assert "client sent" in repr(connection) and "1 connection(s)" in repr(tap)


def test_a_held_greeting_catches_a_client_that_talks_first(lab_server):
    with (
        WireTap(lab_server.address, greeting_delay=0.3) as tap,
        socket.create_connection(tap.address) as sock,
    ):
        sock.sendall(b"EHLO early\r\n")  # before reading anything
        with sock.makefile("rb") as reader:
            assert reader.readline().startswith(b"220 ")  # the greeting still arrives first
            assert reader.readline().startswith(b"250-")
    assert tap.connections[0].spoke_before_greeting
    assert [who for who, _ in tap.connections[0].chunks][:2] == ["client", "server"]


def test_stop_closes_open_connections_and_leaves_nothing():
    aio.run(asyncio.sleep(0))  # smtplab's background loop, where taps run, is there for good
    before = open_fds()
    server = smtplab.start_server(name="test-tap-stop")
    tap = WireTap(server.address).start()
    idle = socket.create_connection(tap.address)
    with idle.makefile("rb") as reader:
        assert reader.readline().startswith(b"220 ")
        tap.stop()
        tap.stop()  # twice is fine
        assert reader.read() == b""  # the tap hung up
    idle.close()
    server.stop()  # and with it the server's end of the tap's connection
    assert open_fds() == before


def test_a_missing_server_closes_the_client_connection():
    server = smtplab.start_server(name="test-tap-gone")
    address = server.address
    server.stop()
    with WireTap(address) as tap, socket.create_connection(tap.address) as sock:
        sock.settimeout(10)
        assert sock.recv(100) == b""


def test_bad_options():
    with pytest.raises(ValueError, match="greeting_delay"):
        WireTap(("127.0.0.1", 25), greeting_delay=-1)
    with pytest.raises(RuntimeError, match="start"):
        _ = WireTap(("127.0.0.1", 25)).address
