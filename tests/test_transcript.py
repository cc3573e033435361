"""Tests for smtplab.transcript: markers, secret masking, renderings, observers, threads."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from smtplab.transcript import MASK, Line, Transcript, TranscriptPair

PLAIN_RESPONSE = base64.b64encode(b"\0alice\0wonderland").decode()  # AGFsaWNlAHdvbmRlcmxhbmQ=
USER_B64 = base64.b64encode(b"alice").decode()
PASSWORD_B64 = base64.b64encode(b"wonderland").decode()
CRAM_RESPONSE = base64.b64encode(b"alice 7d1b4b1f0b0e4b3b9c1f2a3e4d5c6b7a").decode()
SECRETS = (PLAIN_RESPONSE, USER_B64, PASSWORD_B64, CRAM_RESPONSE)


def session() -> Transcript:
    """A client's record of a session using every AUTH mechanism we recognise."""
    t = Transcript(title="client", peer=("127.0.0.1", 2525), local=("127.0.0.1", 50000))
    t.event("connected to 127.0.0.1:2525")
    t.server("220 smtplab.local ESMTP")
    t.client("EHLO lab")
    t.server("250-smtplab.local")
    t.server("250-STARTTLS")
    t.server("250 HELP")
    t.client("STARTTLS")
    t.server("220 2.0.0 Ready to start TLS")
    t.event("TLS started: TLSv1.3", tls=True)
    t.client("EHLO lab", tls=True)
    t.server("250-smtplab.local", tls=True)
    t.server("250 AUTH PLAIN LOGIN CRAM-MD5", tls=True)
    t.client(f"AUTH PLAIN {PLAIN_RESPONSE}", tls=True)
    t.server("535 5.7.8 Authentication credentials invalid", tls=True)
    t.client("AUTH LOGIN", tls=True)
    t.server("334 VXNlcm5hbWU6", tls=True)
    t.client(USER_B64, tls=True)
    t.server("334 UGFzc3dvcmQ6", tls=True)
    t.client(PASSWORD_B64, tls=True)
    t.server("535 5.7.8 Authentication credentials invalid", tls=True)
    t.client("AUTH CRAM-MD5", tls=True)
    t.server("334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+", tls=True)
    t.client(CRAM_RESPONSE, tls=True)
    t.server("235 2.7.0 Authentication successful", tls=True)
    t.client("DATA", tls=True)
    t.server("503 5.5.1 Error: need RCPT command", tls=True)
    t.client("QUIT", tls=True)
    t.server("221 Bye", tls=True)
    t.event("connection closed")
    return t


def server_side() -> Transcript:
    """The server's record of a short session, with one line the client never saw."""
    t = Transcript(title="server")
    t.event("connection from 127.0.0.1:50000")
    t.server("220 smtplab.local ESMTP")
    t.client("EHLO lab")
    t.server("250 smtplab.local")
    t.client(f"AUTH PLAIN {PLAIN_RESPONSE}")
    t.server("235 2.7.0 Authentication successful")
    t.client("NOOP")
    t.server("250 OK")
    return t


def client_side() -> Transcript:
    t = Transcript(title="client")
    t.event("connected")
    t.server("220 smtplab.local ESMTP")
    t.client("EHLO lab")
    t.server("250 smtplab.local")
    t.client(f"AUTH PLAIN {PLAIN_RESPONSE}")
    t.server("235 2.7.0 Authentication successful")
    return t


def assert_masked(rendering: str) -> None:
    for secret in SECRETS:
        assert secret not in rendering
    assert MASK in rendering


def assert_revealed(rendering: str) -> None:
    for secret in SECRETS:
        assert secret in rendering


# ---------------------------------------------------------------- markers and lines


@pytest.mark.parametrize(
    ("sender", "tls", "marker"),
    [
        ("client", False, "->"),
        ("client", True, "~>"),
        ("server", False, "<-"),
        ("server", True, "<~"),
        ("event", False, "**"),
        ("event", True, "**"),
    ],
)
def test_markers(sender: str, tls: bool, marker: str) -> None:
    t = Transcript()
    line = getattr(t, sender)("250 OK" if sender == "server" else "NOOP", tls=tls)
    assert line.marker == marker
    assert line.sender == sender and line.tls is tls
    assert t.text(annotate=False).startswith(f"{marker} ")


def test_text_lines_and_meanings() -> None:
    t = session()
    out = t.text()
    lines = out.splitlines()
    assert len(lines) == len(t)
    assert lines[0] == "** connected to 127.0.0.1:2525"
    assert lines[2] == "-> EHLO lab"
    assert lines[3] == "<- 250-smtplab.local"  # continuation lines are not annotated
    assert "~> EHLO lab" in lines
    final_250 = next(line for line in lines if line.startswith("<- 250 HELP"))
    assert "#" in final_250 and "250" in final_250.split("#", 1)[1]
    line_503 = next(line for line in lines if "503 5.5.1" in line)
    assert line_503.startswith("<~ ") and "503" in line_503.split("#", 1)[1]
    assert "#" not in t.text(annotate=False)


def test_code_and_meaning_of_reply_lines() -> None:
    t = Transcript()
    cont = t.server("250-SIZE 100")
    last = t.server("250 HELP")
    bad = t.server("503 5.5.1 Error: need RCPT command")
    greeting = t.server("hello, not a reply")
    cmd = t.client("250 looks like a reply but is a client line")
    assert (cont.code, last.code, bad.code, greeting.code, cmd.code) == (250, 250, 503, None, None)
    assert "250" in last.meaning and "250" in cont.meaning
    assert "503" in bad.meaning
    assert greeting.meaning == "" and cmd.meaning == ""
    assert t.replies == [cont, last, bad]


def test_times_prefix() -> None:
    t = session()
    first = t.text(times=True).splitlines()[0]
    assert first.lstrip().startswith("+0.000s **")


def test_sequence_protocol_and_clear() -> None:
    t = session()
    snapshot = t.lines
    snapshot.append(Line("event", "not in the transcript"))
    assert len(t.lines) == len(t) == len(snapshot) - 1
    assert list(t) == t.lines
    assert t[0].text == "connected to 127.0.0.1:2525"
    assert t[-1].text == "connection closed"
    assert t[:2] == t.lines[:2]
    t.clear()
    assert len(t) == 0 and t.text() == "" and t.replies == []
    assert "no lines yet" in t.html()


def test_crlf_is_stripped_and_bytes_refused() -> None:
    t = Transcript()
    assert t.client("NOOP\r\n").text == "NOOP"
    with pytest.raises(TypeError, match="surrogateescape"):
        t.client(b"NOOP")  # type: ignore[arg-type]


def test_line_validation() -> None:
    with pytest.raises(ValueError, match="sender"):
        Line("alice", "hello")
    with pytest.raises(ValueError, match="secret_from"):
        Line("client", "abc", secret_from=4)
    line = Line("client", "AUTH PLAIN xyz", secret_from=11)
    assert line.masked == "AUTH PLAIN ********"


# ---------------------------------------------------------------- secret detection


def test_auth_plain_initial_response_is_secret() -> None:
    t = Transcript()
    line = t.client(f"AUTH PLAIN {PLAIN_RESPONSE}")
    assert line.secret_from == len("AUTH PLAIN ")
    assert line.masked == f"AUTH PLAIN {MASK}"
    assert line.text.endswith(PLAIN_RESPONSE)  # the raw record keeps it
    assert t.client("auth  plain  =").masked == f"auth  plain  {MASK}"


def test_auth_login_two_steps_are_secret() -> None:
    t = Transcript()
    assert t.client("AUTH LOGIN").secret_from is None
    t.server("334 VXNlcm5hbWU6")
    assert t.client(USER_B64).secret_from == 0
    t.server("334 UGFzc3dvcmQ6")
    t.event("an event between prompt and answer changes nothing")
    password = t.client(PASSWORD_B64)
    assert password.secret_from == 0 and password.masked == MASK
    t.server("235 2.7.0 Authentication successful")
    assert t.client("NOOP").secret_from is None


def test_auth_cram_md5_response_is_secret() -> None:
    t = Transcript()
    assert t.client("AUTH CRAM-MD5").secret_from is None
    challenge = t.server("334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2U+")
    assert challenge.secret_from is None
    assert t.client(CRAM_RESPONSE).masked == MASK


def test_cancel_and_ordinary_lines_are_not_secret() -> None:
    t = Transcript()
    t.client("AUTH LOGIN")
    t.server("334 VXNlcm5hbWU6")
    assert t.client("*").secret_from is None
    t.server("501 5.7.0 Auth aborted")
    for text in ("AUTH LOGIN", "MAIL FROM:<alice@example.org>", "EHLO lab", "AUTHX PLAIN abc"):
        assert t.client(text).secret_from is None
    assert t.server("334 VXNlcm5hbWU6").secret_from is None  # server lines are never secret
    assert t.event("AUTH PLAIN abc").secret_from is None


def test_clear_forgets_a_pending_334() -> None:
    t = Transcript()
    t.server("334 VXNlcm5hbWU6")
    t.clear()
    assert t.client("EHLO lab").secret_from is None


# ---------------------------------------------------------------- masking everywhere


def test_masked_in_every_rendering_and_revealed_on_request() -> None:
    t = session()
    assert_masked(t.text())
    assert_masked(t.text(times=True, annotate=False))
    assert_masked(str(t))
    assert_masked(t.html())
    assert_masked(t._repr_html_())
    assert_masked(t.mermaid())
    assert_masked(json.dumps(t.to_dicts()))
    for secret in SECRETS:
        assert secret not in repr(t)
        assert all(secret not in repr(line) and secret not in str(line) for line in t)
    assert_revealed(t.text(reveal_secrets=True))
    assert_revealed(t.html(reveal_secrets=True))
    assert_revealed(t.mermaid(reveal_secrets=True))
    assert_revealed(json.dumps(t.to_dicts(reveal_secrets=True)))


def test_pair_masks_and_reveals() -> None:
    pair = Transcript.pair(client_side(), server_side())
    assert isinstance(pair, TranscriptPair)
    for rendering in (pair.text(), str(pair), pair.html(), pair._repr_html_(), pair.mermaid()):
        assert PLAIN_RESPONSE not in rendering
        assert MASK in rendering
    assert PLAIN_RESPONSE not in repr(pair)
    for rendering in (
        pair.text(reveal_secrets=True),
        pair.html(reveal_secrets=True),
        pair.mermaid(reveal_secrets=True),
    ):
        assert PLAIN_RESPONSE in rendering


def test_repr_counts() -> None:
    assert repr(session()) == "<Transcript 'client' 29 lines, 15 replies>"
    t = Transcript()
    t.server("250 OK")
    assert repr(t) == "<Transcript 1 line, 1 reply>"


# ---------------------------------------------------------------- HTML and Mermaid


def test_html_escapes_and_marks() -> None:
    t = Transcript(title="<b>title</b>")
    t.client('MAIL FROM:<script>alert("x")</script>')
    t.server("250 2.1.0 Ok", tls=True)
    out = t.html()
    assert "<script>" not in out and "<b>title</b>" not in out
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in out
    assert '">TLS</span></td>' in out  # the TLS line marked in words
    assert "rgba(" in out  # semi-transparent colours for light and dark themes
    meaning = t[1].meaning
    assert "250" in meaning
    assert f'title="{meaning}' in out  # meaning as a hover too
    assert out.count(f">{meaning}<") == 1  # and beside the reply


def test_long_lines_truncated_for_display_only() -> None:
    t = Transcript()
    t.client("X" * 1000)
    assert "X" * 1000 in t.text()
    assert "X" * 201 not in t.html() and "X" * 200 + "\u2026" in t.html()
    assert "X" * 201 not in t.mermaid() and "\u2026" in t.mermaid()
    assert t.to_dicts()[0]["text"] == "X" * 1000


def test_mermaid_diagram() -> None:
    out = session().mermaid()
    lines = out.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert "    Client->>Server: EHLO lab" in lines
    assert "    Server-->>Client: 220 smtplab.local ESMTP" in lines
    assert lines.count("    Note over Client,Server: TLS starts") == 1
    assert lines.index("    Note over Client,Server: TLS starts") > lines.index(
        "    Client->>Server: STARTTLS"
    )
    t = Transcript()
    t.client('MAIL FROM:<a@b> SIZE=1; "#x"')
    body = t.mermaid().splitlines()[-1]
    assert body == "    Client->>Server: MAIL FROM:#60;a@b#62; SIZE=1#59; #34;#35;x#34;"


def test_pair_alignment() -> None:
    pair = Transcript.pair(client_side(), server_side())
    lines = pair.text(annotate=False).splitlines()
    assert "both        -> EHLO lab" in lines
    assert "server only -> NOOP" in lines
    assert "client only ** connected" in lines
    assert lines.count("both        <- 220 smtplab.local ESMTP") == 1
    mermaid = pair.mermaid()
    assert "    Client->>Server: NOOP [only in the server record]" in mermaid
    assert "    Note left of Client: connected" in mermaid
    assert mermaid.count("Client->>Server: EHLO lab") == 1
    out = pair.html()
    assert "client&#x27;s record" in out and "server&#x27;s record" in out


# ---------------------------------------------------------------- odd input


def test_lone_surrogates_never_raise() -> None:
    bad = b"MAIL FROM:<\xff\xfe@example.org>".decode("utf-8", "surrogateescape")
    t = Transcript(title="\udcff")
    t.client(bad)
    t.server("550 5.1.7 \udc80 bad sender")
    t.client(f"AUTH PLAIN \udc80{PLAIN_RESPONSE}")
    t.event("\udcff")
    renderings = [t.text(), t.text(reveal_secrets=True), t.html(), t.mermaid(), repr(t)]
    renderings.append(json.dumps(t.to_dicts(), ensure_ascii=False))
    pair = Transcript.pair(t, t)
    renderings += [pair.text(), pair.html(), pair.mermaid()]
    for rendering in renderings:
        rendering.encode("utf-8")  # raises UnicodeEncodeError if a surrogate survived
    assert "\ufffd" in t.text()
    assert "550" in t[1].meaning


def test_control_characters_stay_on_one_line() -> None:
    t = Transcript()
    t.client("DATA\nbare LF\x00")
    assert t.text().splitlines() == ["-> DATA\u240abare LF\u2400"]
    assert t.to_dicts()[0]["text"] == "DATA\nbare LF\x00"


# ---------------------------------------------------------------- observers and threads


def test_observers_called_and_errors_kept() -> None:
    t = Transcript()
    seen: list[Line] = []

    def broken(line: Line) -> None:
        raise RuntimeError("observer bug")

    t.observe(seen.append)
    t.observe(seen.append)  # registering twice has no extra effect
    t.observe(broken)
    first = t.client("EHLO lab")
    second = t.server("250 OK")
    assert seen == [first, second]
    assert len(t) == 2
    assert len(t.callback_errors) == 2
    assert isinstance(t.callback_errors[0], RuntimeError)
    t.unobserve(seen.append)
    t.unobserve(seen.append)  # safe twice
    t.client("QUIT")
    assert len(seen) == 2


def test_observer_may_read_the_transcript() -> None:
    t = Transcript()
    lengths: list[int] = []
    t.observe(lambda line: lengths.append(len(t.lines)))
    t.client("EHLO lab")
    t.server("250 OK")
    assert lengths == [1, 2]


@pytest.mark.timeout(30)
def test_thread_safe_appends() -> None:
    t = Transcript()
    calls: list[Line] = []
    t.observe(calls.append)
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(500):
            t.client(f"NOOP {n} {i}")
            if i % 50 == 0:
                t.text()  # readers alongside writers

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads)
    assert len(t) == 2000 and len(calls) == 2000
    for n in range(4):
        mine = [line.text for line in t if line.text.startswith(f"NOOP {n} ")]
        assert mine == [f"NOOP {n} {i}" for i in range(500)]


def test_a_unix_socket_peer_is_shown_whole():
    t = Transcript(peer="/run/user/lab.sock")
    assert "/run/user/lab.sock" in t.html()


# ---------------------------------------------------------------- cheap recording


def test_recorded_lines_become_lines_when_read_with_their_secrets_found() -> None:
    t = Transcript()
    t.record("server", b"334 VXNlcm5hbWU6\r\n", False)
    t.record("client", b"YWxpY2U=\r\n", True)
    t.record("client", "NOOP", True)
    assert len(t) == 3
    first, second, third = t.lines
    assert (first.code, first.text) == (334, "334 VXNlcm5hbWU6")
    assert (second.text, second.secret_from, second.tls, second.masked) == ("YWxpY2U=", 0, True, MASK)
    assert third.secret_from is None
    assert first.time <= second.time <= third.time


def test_an_observer_sees_recorded_lines_as_they_come_and_not_those_before() -> None:
    t = Transcript()
    t.record("client", "EHLO before", False)
    seen: list[Line] = []
    t.observe(seen.append)
    t.record("client", "AUTH PLAIN c2VjcmV0", False)
    t.message_data(3, 42)
    assert [line.masked for line in seen] == [f"AUTH PLAIN {MASK}", "message data: 3 lines, 42 bytes", "."]
    assert [line.sender for line in seen] == ["client", "event", "client"]


def test_masking_rule_is_one_function() -> None:
    from smtplab.transcript import masked, secret_start

    assert secret_start("AUTH PLAIN abc", after_334=False) == len("AUTH PLAIN ")
    assert secret_start("AUTH PLAIN ", after_334=False) is None  # nothing after the mechanism
    assert secret_start("*", after_334=True) is None  # a cancel is no secret
    assert masked("YWxpY2U=", after_334=True) == MASK
    assert masked("auth login YWxpY2U=", after_334=False) == f"auth login {MASK}"


def test_each_reply_line_knows_the_command_it_answers() -> None:
    t = Transcript()
    t.record("event", "connection from 127.0.0.1:50000", False)
    t.record("server", "220 lab.test ESMTP", False)
    t.record("client", b"EHLO client\r\n", False)
    t.record("server", "250-lab.test", False)
    t.record("server", "250 STARTTLS", False)
    t.record("client", "STARTTLS", False)
    t.record("server", "220 2.0.0 Ready to start TLS", False)
    t.record("client", "MAIL FROM:<a@example.test>", True)  # sent ahead (pipelining):
    t.record("client", "RCPT TO:<b@example.test>", True)  # both replies come after both commands
    t.record("server", "530 5.7.0 Authentication required", True)
    t.record("server", "503 5.5.1 Error: need MAIL command", True)
    t.record("client", "AUTH LOGIN", True)
    t.record("server", "334 VXNlcm5hbWU6", True)
    t.record("client", "YWxpY2U=", True)
    t.record("server", "334 UGFzc3dvcmQ6", True)
    t.record("client", "d29uZGVybGFuZA==", True)
    t.record("server", "235 2.7.0 Authentication successful", True)
    t.record("client", "DATA", True)
    t.record("server", "354 End data with <CR><LF>.<CR><LF>", True)
    t.message_data(1, 10, tls=True)
    t.record("server", "250 2.0.0 OK: queued", True)
    replies = {line.text: line for line in t.replies}
    assert [line.answers for line in t.replies] == [
        "", "EHLO", "EHLO", "STARTTLS", "MAIL", "RCPT", "AUTH", "AUTH", "AUTH", "DATA", ".",
    ]  # fmt: skip
    assert "greeting" in replies["220 lab.test ESMTP"].meaning
    assert "STARTTLS" not in replies["220 lab.test ESMTP"].meaning
    assert "TLS handshake" in replies["220 2.0.0 Ready to start TLS"].meaning
    assert "STARTTLS" not in replies["530 5.7.0 Authentication required"].meaning
    assert "Message accepted" in replies["250 2.0.0 OK: queued"].meaning
    text = t.text()
    assert "# 220 — Service ready: the server's greeting" in text
    assert "Message accepted" in t.html() and "Message accepted" in t.to_dicts()[-1]["meaning"]
    t.clear()
    assert t.server("220 again").answers == ""  # after clear(), a greeting again
