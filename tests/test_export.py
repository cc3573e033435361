"""export: a transcript saved as a web page, as JSON or as text, chosen by suffix, secrets masked."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

import smtplab
from smtplab.export import FORMAT, to_json

SECRET = base64.b64encode(b"\0alice\0wonderland").decode()


def dialogue() -> smtplab.Transcript:
    transcript = smtplab.Transcript(title="client to lab — ünïcode", peer=("127.0.0.1", 2525), local="/tmp/x")
    transcript.client("EHLO client.smtplab.test")
    transcript.server("250 smtplab.test")
    transcript.client(f"AUTH PLAIN {SECRET}")
    transcript.server("235 2.7.0 Authentication successful")
    transcript.event("connection closed")
    return transcript


class Text(HTMLParser):
    """The text a browser would show, and the charset the page declares."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.charset = ""

    def handle_starttag(self, tag, attrs):
        if tag == "meta":
            self.charset = dict(attrs).get("charset", self.charset)

    def handle_data(self, data):
        self.parts.append(data)


def test_html_is_a_whole_page_in_utf8_with_the_secret_masked(tmp_path):
    path = dialogue().save(tmp_path / "session.html")
    assert path == tmp_path / "session.html"
    page = path.read_bytes().decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    parser = Text()
    parser.feed(page)
    shown = "".join(parser.parts)
    assert parser.charset == "utf-8"
    assert "EHLO client.smtplab.test" in shown and "235 2.7.0 Authentication successful" in shown
    assert "client to lab — ünïcode" in shown
    assert SECRET not in page and "********" in shown


def test_json_holds_every_line_as_data_and_masks_the_secret(tmp_path):
    transcript = dialogue()
    data = json.loads(transcript.save(tmp_path / "session.json").read_text(encoding="utf-8"))
    assert data["format"] == FORMAT and data["secrets"] == "masked"
    assert (
        data["title"] == transcript.title
        and data["peer"] == ["127.0.0.1", 2525]
        and data["local"] == "/tmp/x"
    )
    assert data["lines"] == transcript.to_dicts()
    assert [line["marker"] for line in data["lines"]] == ["->", "<-", "->", "<-", "**"]
    assert SECRET not in json.dumps(data)


def test_text_and_revealing_on_purpose(tmp_path):
    transcript = dialogue()
    text = transcript.save(tmp_path / "session.txt").read_text(encoding="utf-8")
    assert text == transcript.text() + "\n" and SECRET not in text
    revealed = transcript.save(tmp_path / "session.LOG", reveal_secrets=True).read_text(encoding="utf-8")
    assert SECRET in revealed
    data = to_json(transcript, reveal_secrets=True)
    assert data["secrets"] == "revealed" and SECRET in json.dumps(data)


def test_a_pair_of_a_real_session_saves_both_records(lab_server, tmp_path):
    with smtplab.SyncClient(lab_server) as client:
        client.send("alice@example.test", ["bob@example.test"], "Subject: hand-in\r\n\r\nhi\r\n")
    pair = client.pair()
    data = json.loads(pair.save(tmp_path / "pair.json").read_text(encoding="utf-8"))
    assert set(data) == {"format", "secrets", "client", "server"}
    assert data["client"]["lines"] == client.transcript.to_dicts()
    assert any(line["text"].startswith("MAIL FROM:<alice@example.test>") for line in data["server"]["lines"])
    page = pair.save(tmp_path / "pair.htm").read_text(encoding="utf-8")
    assert "server&#x27;s record" in page or "server's record" in page


def test_an_unknown_suffix_or_object_is_refused_with_the_way_out(tmp_path):
    with pytest.raises(ValueError, match=r"\.html, \.htm, \.json, \.txt, \.log") as caught:
        dialogue().save(tmp_path / "session.pdf")
    assert "session.html" in str(caught.value)
    assert not (tmp_path / "session.pdf").exists()
    from smtplab.export import save

    with pytest.raises(TypeError, match="not str"):
        save("EHLO", tmp_path / "x.txt")
