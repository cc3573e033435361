"""Tests for smtplab.render: one renderer for transcripts, pairs and the TranscriptView widget."""

from __future__ import annotations

import html
import re

from smtplab import render
from smtplab.render import format_address
from smtplab.transcript import MASK, Transcript


def auth_line_transcript() -> Transcript:
    t = Transcript(title="client")
    t.server("250-smtplab.test")
    t.server("250 AUTH PLAIN")
    t.client("AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=", tls=True)
    return t


def test_format_address_covers_every_kind_of_socket_address():
    assert format_address(("127.0.0.1", 2525)) == "127.0.0.1:2525"
    assert format_address(("::1", 2525, 0, 0)) == "[::1]:2525"
    assert format_address("/run/user/lab.sock") == "/run/user/lab.sock"  # a Unix socket's path, whole
    assert format_address("") == "a local socket"
    assert format_address(None) == "?"


def test_display_makes_control_characters_and_bad_bytes_visible():
    assert render.display("a\r\nb\tc") == "a\u240d\u240ab\tc"
    assert render.display("x\udcff") == "x\ufffd"
    assert render.json_safe("plain") == "plain"


def test_a_row_has_tls_mark_marker_text_and_meaning_and_hides_the_secret():
    t = auth_line_transcript()
    cont, last, auth = t.lines
    row = render.html_row(auth, start=cont.time)
    assert row.startswith('<tr class="smtplab-client"') and 'title="inside TLS"><span' in row
    assert "AUTH PLAIN <span" in row and f">{MASK}</span>" in row and "AGFsaWNl" not in row
    assert "AGFsaWNlAHdvbmRlcmxhbmQ=</span>" in render.html_row(auth, reveal_secrets=True)
    assert f'title="{html.escape(cont.meaning)}"' in render.html_row(cont)  # "250-…" on hover
    assert f">{html.escape(cont.meaning)}</td>" not in render.html_row(cont)  # but not beside it
    assert f">{html.escape(last.meaning)}</td>" in render.html_row(last)


def test_the_library_and_the_widget_draw_the_same_row():
    from smtplab.widgets import TranscriptView

    t = auth_line_transcript()
    view = TranscriptView(t)
    try:
        start = t.lines[0].time
        for line in t.lines:
            assert render.html_row(
                line, start=start, limit=1000, reveal_hint='tick "reveal secrets" to show it'
            ) in (view.table.value)
            assert render.html_row(line, start=start) in t.html()
    finally:
        view.close()


def test_long_lines_are_cut_at_the_limit_and_say_so():
    t = Transcript()
    line = t.client("X" * 300)
    row = render.html_row(line, limit=10)
    assert "X" * 10 + "\u2026" in row and "X" * 11 not in row
    assert "300 characters; the first 10 are shown" in row


def test_mermaid_notes_tls_changes_and_escapes():
    t = Transcript()
    t.client("MAIL FROM:<a#b@example.test>")
    t.server("250 OK", tls=True)
    out = t.mermaid().splitlines()
    assert out[3] == "    Client->>Server: MAIL FROM:#60;a#35;b@example.test#62;"
    assert out[4] == "    Note over Client,Server: TLS starts"


def test_tls_is_said_in_words_never_by_an_emoji_alone():
    t = auth_line_transcript()
    t.event("TLS started (STARTTLS)", tls=True)
    pair = Transcript.pair(t, t)
    for shown in (t.html(), pair.html(), render.LEGEND):
        visible = re.sub(r"<[^>]*>", " ", shown)  # the text a reader sees, without tags or hovers
        assert "TLS" in visible
        assert not re.search("[\U0001f300-\U0001faff\u2600-\u27bf]", shown), "an emoji carries meaning"
    row = render.html_row(t.lines[2])  # the AUTH line, sent inside TLS
    assert re.sub(r"<[^>]*>", " ", row).split()[0] == "TLS"  # the row's first visible word
    assert "~>" in t.text() and "inside TLS" in render.LEGEND


# -- the session state machine ------------------------------------------------------------------


def test_the_state_machine_picture_marks_where_the_session_stands_in_words_and_colour():
    from smtplab.protocol import State

    svg = render.state_svg(State.RCPT)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    now = [part for part in svg.split("<g ") if "smtplab-state-now" in part]
    assert (
        len(now) == 1 and ">rcpt<" in now[0] and ">you are here<" in now[0] and 'stroke-width="3"' in now[0]
    )
    assert svg.count("you are here") == 3  # drawn, in the hover title, in the aria-label
    assert 'aria-label="Now: rcpt (you are here): a recipient was accepted' in svg
    forward = (">EHLO, HELO<", ">\u2192 250<", ">MAIL<", ">RCPT<", ">DATA<", ">\u2192 354<")  # above arrows
    back = ("STARTTLS \u2192 220", "EHLO, HELO, RSET \u2192 250", "&quot;.&quot; \u2192 250")  # below
    for label in forward + back:
        assert label in svg, label
    assert "QUIT \u2192 221" in svg and "from any state but data" in svg  # one label for closing
    assert "you are here" not in render.state_svg(None)


def test_the_state_machine_as_mermaid():
    from smtplab.protocol import State

    text = render.state_mermaid(State.DATA)
    lines = text.splitlines()
    assert lines[:2] == ["stateDiagram-v2", "    direction LR"]
    assert '    state "data (you are here)" as data' in lines and "    class data now" in lines
    assert (
        "    rcpt --> data: DATA \u2192 354" in lines
        and "    data --> greeted: #34;.#34; \u2192 250" in lines
    )
    assert "classDef" not in render.state_mermaid(None)


def test_the_state_machine_html_says_what_is_valid_now():
    from smtplab.protocol import State

    page = render.state_html(State.DATA, ["."])
    assert "Valid now: a line holding only ." in page and render.STATE_NOTE in page


def test_raw_bytes_show_every_cr_and_lf_and_say_who_sent_them():
    rows = render.wire_rows("client", b"EHLO me\r\nMAIL\nha<b>\r", tls=True)
    assert len(rows) == 3 and all(
        'class="smtplab-wire-client"' in row and "client \u2192" in row for row in rows
    )
    assert 'EHLO me<span class="smtplab-crlf"' in rows[0] and ">CR LF</span>" in rows[0]  # words: any font
    assert 'class="smtplab-bare"' in rows[1] and "a bare LF" in rows[1] and ">LF</span>" in rows[1]
    assert "ha&lt;b&gt;" in rows[2] and "a bare CR" in rows[2]
    assert all('title="inside TLS">TLS</td>' in row for row in rows)
    (server,) = render.wire_rows("server", b"250 OK")
    assert "\u2190 server" in server and "(no line ending)" in server and "inside TLS" not in server
