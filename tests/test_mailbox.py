"""The mailbox: list behaviour, waiting, observers off the server's loop, memory bounds."""

from __future__ import annotations

import email.policy
import smtplib
import threading

import pytest

from smtplab.errors import MailboxWarning
from smtplab.mailbox import CapturedMessage, Mailbox


def make(n: int, size: int = 10) -> CapturedMessage:
    return CapturedMessage(
        mail_from=f"a{n}@example.test",
        rcpt_tos=("b@example.test",),
        raw=b"Subject: %d\r\n\r\n" % n + b"x" * size,
    )


def test_behaves_like_a_read_only_list():
    box = Mailbox()
    assert len(box) == 0 and box.latest is None and not box
    for n in range(3):
        box.append(make(n))
    assert len(box) == 3 and box
    assert box[0].subject == "0" and box[-1] is box.latest
    assert [m.subject for m in box[1:]] == ["1", "2"]
    assert [m.subject for m in box] == ["0", "1", "2"]
    box.clear()
    assert len(box) == 0 and box.received == 3


def test_message_is_parsed_lazily_and_repr_is_short():
    message = make(7)
    assert "message" not in vars(message)
    assert message.subject == "7"
    assert "message" in vars(message)
    assert repr(message).startswith("<CapturedMessage L") and "subject '7'" in repr(message)


def test_wait_for_counts_messages_received_not_held():
    box = Mailbox()
    box.append(make(1))
    box.clear()
    threading.Thread(target=box.append, args=(make(2),)).start()
    assert [m.subject for m in box.wait_for(2, timeout=5)] == ["2"]


def test_observers_run_off_the_servers_loop(lab_server):
    release = threading.Event()
    seen: list[str] = []

    @lab_server.mailbox.observe
    def slow(message):
        release.wait(5)  # a slow observer must not stall SMTP
        seen.append(message.subject)

    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        for n in range(3):
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: %d\r\n\r\nhi\r\n" % n)
    assert len(lab_server.mailbox.wait_for(3)) == 3
    done = threading.Event()
    lab_server.mailbox.observe(lambda message: done.set() if message.subject == "2" else None)
    release.set()
    assert done.wait(5)
    assert seen == ["0", "1", "2"]


def test_observer_errors_are_kept_not_raised():
    box = Mailbox()
    ok = threading.Event()
    box.observe(lambda message: 1 / 0)
    box.observe(lambda message: ok.set())
    box.append(make(1))
    assert ok.wait(5)
    assert isinstance(box.observer_errors[0], ZeroDivisionError)
    box.close()


def test_unobserve_stops_the_dispatcher():
    box = Mailbox()
    seen = threading.Event()
    callback = box.observe(lambda message: seen.set())
    box.append(make(1))
    assert seen.wait(5)
    dispatcher = box._dispatcher
    box.unobserve(callback)
    dispatcher.join(5)
    assert not dispatcher.is_alive()


def test_bounds_drop_the_oldest_and_warn_once():
    box = Mailbox(max_messages=2)
    box.append(make(1))
    box.append(make(2))
    with pytest.warns(MailboxWarning, match="dropped the 1 oldest"):
        box.append(make(3))
    box.append(make(4))  # no second warning (filterwarnings=error would fail the test)
    assert [m.subject for m in box] == ["3", "4"]
    assert box.dropped == 2 and box.received == 4
    assert "2 dropped" in repr(box)


def test_byte_bound():
    box = Mailbox(max_bytes=100)
    messages = [make(n, size=40) for n in range(5)]
    with pytest.warns(MailboxWarning):  # noqa: PT031 - the third append drops the first
        for message in messages:
            box.append(message)
    assert box.nbytes <= 100 and len(box) == 1 and box.dropped == 4


def test_bad_bounds_are_rejected():
    with pytest.raises(ValueError, match="max_messages must be a positive number"):
        Mailbox(max_messages=0)


@pytest.mark.filterwarnings("error")
def test_a_full_mailbox_never_refuses_a_stored_message_even_when_warnings_are_errors():
    box = Mailbox(max_messages=1)
    box.append(make(1))
    box.append(make(2))  # would raise here if the notice escaped
    assert [m.subject for m in box] == ["2"] and box.dropped == 1


def test_html_attachments_and_tree_of_a_captured_message():
    from email.message import EmailMessage

    built = EmailMessage()
    built["Subject"] = "with parts"
    built.set_content("plain text")
    built.add_alternative("<p>html text</p>", subtype="html")
    built.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="data.csv")
    message = CapturedMessage(
        mail_from="a@example.test", rcpt_tos=("b@example.test",), raw=built.as_bytes(policy=email.policy.SMTP)
    )
    assert message.text == "plain text\n" and message.html == "<p>html text</p>\n"
    (attachment,) = message.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == ("data.csv", "text/csv", 8)
    assert attachment.data == b"a,b\n1,2\n"
    assert message.mime_tree().splitlines()[0] == "multipart/mixed" and "data.csv" in message.mime_tree()
    assert message.flags == ()


def test_a_plain_string_body_keeps_its_umlaut(lab_server):
    import smtplab

    with smtplab.SyncClient(lab_server) as client:
        assert client.send("a@example.test", "b@example.test", "Subject: Gruss\r\n\r\nHallo Jörg").ok
    (message,) = lab_server.mailbox.wait_for(1)
    assert message.text == "Hallo Jörg\n"
    assert message.flags == ("8bit-without-charset",), "the guess is said, not hidden"
    assert message.html == "" and message.attachments == []


@pytest.mark.parametrize(
    "content", ["Hallo Jörg", "\r\nHallo Jörg", "Hallo Jorg"], ids=["bare", "blank-head", "ascii"]
)
def test_a_body_without_headers_is_still_the_text(lab_server, content):
    import smtplab

    with smtplab.SyncClient(lab_server) as client:
        assert client.send("a@example.test", "b@example.test", content).ok
    (message,) = lab_server.mailbox.wait_for(1)
    assert (
        message.text == content.strip("\r\n").replace("\r\n", "\n") + "\n"
    )  # a part with no headers is falsy
