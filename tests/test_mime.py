"""MIME reading: bodies, attachments, the tree of parts, and text whose charset is missing."""

from __future__ import annotations

import doctest
from email import message_from_bytes, policy
from email.message import EmailMessage

from smtplab import mime


def rich() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Report"
    message.set_content("Hello Bob,\nthe report is attached.\n")
    message.add_alternative('<p>Hello Bob, <img src="cid:logo@lab"></p>', subtype="html")
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    html.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@lab>")
    message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="report.pdf")
    return message


def test_doctest():
    assert doctest.testmod(mime).failed == 0


def test_bodies_and_attachments_of_a_rich_message():
    message = rich()
    assert "the report is attached" in mime.decode_text(mime.body(message, "plain"))[0]
    assert "<p>Hello Bob" in mime.decode_text(mime.body(message, "html"))[0]
    (pdf,) = (a for a in mime.attachments(message) if a.filename == "report.pdf")
    assert (pdf.content_type, pdf.data, pdf.size, pdf.disposition) == (
        "application/pdf",
        b"%PDF-1.4 fake",
        13,
        "attachment",
    )
    (logo,) = (a for a in mime.attachments(message) if a.content_type == "image/png")
    assert logo.content_id == "<logo@lab>" and logo.disposition == "inline" and logo.filename is None
    assert "report.pdf" in repr(pdf)


def test_the_tree_shows_nesting_and_the_facts_of_each_part():
    lines = mime.mime_tree(rich()).splitlines()
    assert lines[0] == "multipart/mixed"
    assert lines[1] == "├─ multipart/alternative"
    assert lines[2].startswith("│  ├─ text/plain  (charset=utf-8")
    assert lines[3] == "│  └─ multipart/related"
    assert lines[4].startswith("│     ├─ text/html")
    assert lines[5].startswith("│     └─ image/png  (encoding=base64, inline, cid=<logo@lab>, 9 bytes)")
    assert lines[6] == "└─ application/pdf  (name='report.pdf', encoding=base64, attachment, 13 bytes)"


def test_8bit_text_without_a_charset_is_read_as_utf8_and_said_so():
    parsed = message_from_bytes("Subject: hi\r\n\r\nHallo Jörg\r\n".encode(), policy=policy.default)
    assert mime.decode_text(parsed) == ("Hallo Jörg\r\n", True)
    latin = message_from_bytes(b"Subject: hi\r\n\r\nHallo J\xf6rg\r\n", policy=policy.default)
    assert mime.decode_text(latin) == ("Hallo Jörg\r\n", True), "not UTF-8 either: Latin-1 never fails"


def test_a_declared_charset_is_honoured_and_an_unknown_one_does_not_raise():
    declared = message_from_bytes(
        b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nJ\xf6rg\r\n", policy=policy.default
    )
    assert mime.decode_text(declared) == ("Jörg\r\n", False)
    unknown = message_from_bytes(
        b"Content-Type: text/plain; charset=x-klingon\r\n\r\nJ\xc3\xb6rg\r\n", policy=policy.default
    )
    assert mime.decode_text(unknown) == ("Jörg\r\n", False)
