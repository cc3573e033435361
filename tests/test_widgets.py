"""Widgets driven from Python as a learner would: set .value, .click(), read what they show."""

from __future__ import annotations

import asyncio
import html
import smtplib
import threading
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import ipywidgets
import pytest

import smtplab
from smtplab.widgets import Composer, MailboxView, ServerPanel, TranscriptView

SCRIPT = "<script>alert('owned')</script>"


def wait_until(
    widget: ipywidgets.Widget, name: str, predicate: Callable[[Any], bool], timeout: float = 5
) -> Any:
    """Wait until ``widget.<name>`` satisfies ``predicate`` — woken by the trait's own change event."""
    done = threading.Event()

    def check(change: object = None) -> None:
        if predicate(getattr(widget, name)):
            done.set()

    widget.observe(check, names=name)
    try:
        check()
        assert done.wait(timeout), f"{type(widget).__name__}.{name} is still {getattr(widget, name)!r}"
    finally:
        widget.unobserve(check, names=name)
    return getattr(widget, name)


def send_with_smtplib(server: smtplab.LabServer, message: EmailMessage) -> None:
    with smtplib.SMTP(*server.address) as client:
        client.send_message(message)


def rich_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alice@example.test"
    message["To"] = "bob@example.test"
    message["Subject"] = f"Report {SCRIPT}"
    message["X-Note"] = '<img src=x onerror="alert(1)">'
    message.set_content("Hello Bob,\nthe report is attached.\n")
    html_body = '<p onclick="alert(2)">Hello <b>Bob</b></p><script>alert(3)</script>'
    message.add_alternative(html_body, subtype="html")
    message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="report.pdf")
    return message


def stderr_text(widget: ipywidgets.Widget) -> str:
    return "".join(output.get("text", "") for output in widget.output.outputs)


# -- ServerPanel ---------------------------------------------------------------------------


def test_server_panel_starts_its_own_server_and_counts_messages():
    panel = ServerPanel()
    try:
        assert panel.state.value == "not started"
        assert panel.server is None and panel.stop_button.disabled

        panel.start_button.click()

        server = panel.server
        assert server is not None and server.running and server.name == "panel"
        assert panel.state.value == "running"
        assert panel.address.value == f"127.0.0.1:{server.port}"
        assert panel.count.value == "0 messages" and panel.start_button.disabled

        send_with_smtplib(server, rich_message())
        assert wait_until(panel.count, "value", lambda value: value == "1 message") == "1 message"

        panel.stop_button.click()
        assert panel.state.value == "stopped" and not server.running
        assert panel.address.value == "" and panel.count.value == "1 message"

        panel.start_button.click()  # the same server again, same port
        assert server.running and panel.address.value == f"127.0.0.1:{server.port}"
    finally:
        panel.close()
    assert not panel.server.running, "close() stops the server the panel started"
    assert not panel.errors


def test_server_panel_controls_a_given_server_and_leaves_it_running(lab_server):
    panel = ServerPanel(lab_server)
    assert panel.state.value == "running"
    panel.stop_button.click()
    assert not lab_server.running and panel.state.value == "stopped"
    panel.start_button.click()
    assert lab_server.running and panel.state.value == "running"
    panel.close()
    assert lab_server.running


def test_server_panel_follows_a_server_started_and_stopped_from_code(lab_server):
    panel = ServerPanel(lab_server)
    try:
        lab_server.stop()
        assert panel.state.value == "stopped" and panel.stop_button.disabled
        assert not panel.start_button.disabled
        lab_server.start()
        assert panel.state.value == "running" and panel.address.value == f"127.0.0.1:{lab_server.port}"
        smtplab.stop_all()
        assert panel.state.value == "stopped" and panel.address.value == ""
    finally:
        panel.close()
    lab_server.start()
    assert panel.state.value == "stopped", "a closed panel no longer follows the server"


def test_widgets_keep_showing_what_happened_when_their_server_stops(lab_server):
    view, composer, panel = MailboxView(lab_server.mailbox), Composer(lab_server), ServerPanel(lab_server)
    try:
        composer.send_button.click()
        assert composer.sent.wait(10) and composer.last_result.ok
        lab_server.mailbox.wait_for(1)
        wait_until(view.text, "value", lambda text: "Hello, Bob!" in text)
        transcript_view = TranscriptView(composer.client.transcript)
        shown = (view.listed, view.text.value, composer.result.value, transcript_view.table.value)

        smtplab.stop_all()  # what a notebook's clean-up does

        assert (view.listed, view.text.value, composer.result.value, transcript_view.table.value) == shown
        assert panel.state.value == "stopped" and panel.count.value == "1 message"
        assert not any(w.errors for w in (view, composer, panel, transcript_view))

        lab_server.start()  # and they go on when it is back
        send_with_smtplib(lab_server, rich_message())
        wait_until(view.selector, "options", lambda options: len(options) == 2)
        wait_until(panel.count, "value", lambda value: value == "2 messages")
    finally:
        for widget in (view, composer, panel):
            widget.close()


def test_an_error_in_a_click_lands_in_the_widget_output(lab_server):
    taken = smtplab.LabServer(port=lab_server.port, name="second")
    panel = ServerPanel(taken)
    try:
        panel.start_button.click()  # must not raise into ipywidgets, where nobody sees it
        assert isinstance(panel.errors[-1], smtplab.PortInUseError)
        assert "PortInUseError" in stderr_text(panel) and str(panel.errors[-1]) in stderr_text(panel)
        assert panel.state.value == "stopped"
    finally:
        panel.close()


# -- MailboxView ---------------------------------------------------------------------------


def test_mailbox_view_lists_and_shows_a_message_escaped(lab_server):
    view = MailboxView(lab_server.mailbox)
    try:
        assert "no messages yet" in view.summary.value and view.listed == []
        send_with_smtplib(lab_server, rich_message())
        lab_server.mailbox.wait_for(1)
        # The attachments tab is drawn last: once it shows the file, the whole view is up to date.
        wait_until(view.attachments, "value", lambda value: "report.pdf" in value)

        message = lab_server.mailbox.latest
        assert view.selector.value == message.id and view.selected is message
        (line,) = view.listed  # each message listed once
        assert "alice@example.test → bob@example.test" in line and "Report <script>" in line
        assert "1 message" in view.summary.value

        # Every header is there and none of them became markup.
        assert "X-Note" in view.headers.value and "&lt;img src=x onerror=" in view.headers.value
        assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in view.headers.value
        for part in (view.summary, view.headers, view.envelope, view.text, view.mime, view.attachments):
            assert "<script" not in part.value and "<img" not in part.value
        assert "Hello Bob,\nthe report is attached." in view.text.value
        assert "&lt;RCPT&gt;" not in view.envelope.value and "&lt;bob@example.test&gt;" in view.envelope.value

        # The HTML body exists only inside a sandboxed iframe's srcdoc, escaped.
        html = view.html.value
        assert html.count("<iframe") == 1 and '<iframe sandbox="" ' in html
        assert "<p onclick" not in html and "<script>" not in html
        assert "&lt;p onclick=&quot;alert(2)&quot;&gt;" in html
        assert "Content-Security-Policy" in html

        assert "report.pdf" in view.attachments.value and "application/pdf" in view.attachments.value
        assert "13 bytes" in view.attachments.value
        tree = view.mime.value
        for kind in (
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "text/html",
            "application/pdf",
        ):
            assert kind in tree
        assert tree.index("multipart/alternative") < tree.index("text/html") < tree.index("application/pdf")
    finally:
        view.close()
    assert not view.errors


def test_mailbox_view_follows_the_newest_unless_you_picked_another(lab_server):
    view = MailboxView(lab_server.mailbox)
    try:
        for n in range(2):
            message = EmailMessage()
            message["Subject"] = f"number {n}"
            message.set_content("hi")
            with smtplib.SMTP(*lab_server.address) as client:
                client.sendmail("a@example.test", ["b@example.test"], message.as_bytes())
        lab_server.mailbox.wait_for(2)
        wait_until(view.selector, "options", lambda options: "number 1" in str(options))
        first, second = lab_server.mailbox[:]
        assert view.selected is second

        view.selector.value = first.id  # the learner picks the older one
        assert "number 0" in view.headers.value

        with smtplib.SMTP(*lab_server.address) as client:
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: number 2\r\n\r\nhi\r\n")
        wait_until(view.selector, "options", lambda options: "number 2" in str(options))
        assert len(view.selector.options) == 3
        assert view.selected is first, "a new message does not yank the learner away"

        lab_server.mailbox.clear()
        view.refresh_button.click()
        assert view.selector.options == () and view.selected is None
        assert "(no message selected)" in view.headers.value
    finally:
        view.close()


def test_mailbox_view_needs_a_mailbox(lab_server):
    with pytest.raises(TypeError, match=r"pass server\.mailbox"):
        MailboxView(lab_server)


def test_close_stops_observing(lab_server):
    view = MailboxView(lab_server.mailbox)
    view.close()
    after_view = threading.Event()
    lab_server.mailbox.observe(lambda message: after_view.set())  # runs after any earlier observer
    with smtplib.SMTP(*lab_server.address) as client:
        client.sendmail("a@example.test", ["b@example.test"], b"Subject: unseen\r\n\r\nhi\r\n")
    assert after_view.wait(5)
    assert view.selector.options == ()


# -- Composer ------------------------------------------------------------------------------


def test_composer_sends_and_the_message_appears_in_the_mailbox_view(lab_server):
    composer = Composer(lab_server)
    view = MailboxView(lab_server.mailbox)
    try:
        composer.sender.value = "Carol <carol@example.test>"
        composer.to.value = "dave@example.test, erin@example.test"
        composer.subject.value = "Sent from the composer"
        composer.body.value = "Hi Dave, hi Erin!"
        composer.send_button.click()
        assert composer.sent.wait(10)

        result = composer.last_result
        assert result is not None and result.ok and composer.last_error is None
        assert result.accepted == ["dave@example.test", "erin@example.test"]
        assert composer.last_future.result() is result
        assert composer.result.value.startswith(
            '<span style="font-size:13px"><b>Accepted</b> for 2 recipients: 250'
        )
        assert not composer.send_button.disabled

        transcript = composer.transcript_view.table.value
        assert "MAIL FROM:&lt;carol@example.test&gt;" in transcript
        assert "RCPT TO:&lt;erin@example.test&gt;" in transcript
        goodbye = next(line for line in composer.client.transcript if line.code == 221)
        assert f">{html.escape(goodbye.meaning)}</td>" in transcript  # the meaning beside the reply
        assert composer.transcript_view.transcript is composer.client.transcript

        lab_server.mailbox.wait_for(1)
        wait_until(view.text, "value", lambda text: "Hi Dave, hi Erin!" in text)
        assert any("Sent from the composer" in line for line in view.listed)
        assert lab_server.mailbox.latest.rcpt_tos == ("dave@example.test", "erin@example.test")
    finally:
        composer.close()
        view.close()
    assert not composer.errors and not view.errors


def test_composer_reports_a_failed_send_in_one_line_and_clears_it_at_the_next_send(lab_server):
    composer = Composer(lab_server)
    lab_server.stop()
    composer.send_button.click()
    assert composer.sent.wait(10)
    assert isinstance(composer.last_error, smtplab.LabConnectionRefusedError)
    assert "<b>Not sent</b>" in composer.result.value
    line = composer.error_line.value
    assert "<b>Error</b>: LabConnectionRefusedError: nothing is listening" in line
    assert "Traceback" not in line and composer.output.layout.display == "none", "traceback hidden"
    composer.traceback_button.value = True
    assert composer.output.layout.display is None
    assert "Traceback (most recent call last)" in stderr_text(composer)
    with pytest.raises(smtplab.LabConnectionRefusedError):
        composer.last_future.result()

    lab_server.start()
    composer.send_button.click()
    assert composer.sent.wait(10) and composer.last_result.ok
    assert composer.error_line.value == "" and stderr_text(composer) == ""
    assert composer._error_row.layout.display == "none" and len(composer.errors) == 1
    composer.close()


def test_composer_refuses_a_line_break_in_an_address(lab_server):
    composer = Composer(lab_server)
    composer.to.value = "bob@example.test\r\nRCPT TO:<mallory@example.test>"
    composer.send_button.click()
    assert composer.sent.is_set() and isinstance(composer.last_error, ValueError)
    assert "ValueError" in stderr_text(composer)
    assert len(lab_server.mailbox) == 0
    composer.to.value = ""
    assert composer.send_button.disabled, "nothing to send to"
    composer.close()


def test_widgets_hand_updates_to_the_loop_they_were_made_on(lab_server):
    """In a kernel, updates from the server's threads must reach widgets on the kernel's loop."""

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        view = MailboxView(lab_server.mailbox)
        composer = Composer(lab_server)
        updated = asyncio.Event()
        threads: list[int] = []

        def on_options(change: object) -> None:
            threads.append(threading.get_ident())
            updated.set()

        view.selector.observe(on_options, names="options")
        try:
            await asyncio.to_thread(send_with_smtplib, lab_server, rich_message())
            await asyncio.wait_for(updated.wait(), 5)
            assert threads == [loop_thread]

            composer.send_button.click()  # on a running loop: scheduled, not done yet
            assert not composer.sent.is_set()
            result = await asyncio.wait_for(asyncio.wrap_future(composer.last_future), 10)
            assert result.ok and composer.last_result is result
            assert "QUIT" in composer.transcript_view.table.value
        finally:
            view.close()
            composer.close()

    asyncio.run(scenario())


# -- TranscriptView ------------------------------------------------------------------------


def auth_transcript() -> smtplab.Transcript:
    transcript = smtplab.Transcript(title="client")
    transcript.event("connected")
    transcript.server("220 smtplab.test ESMTP")
    transcript.client("EHLO lab")
    transcript.server("250-smtplab.test")
    transcript.server("250 AUTH PLAIN LOGIN")
    transcript.client("STARTTLS")
    transcript.server("220 Ready to start TLS")
    transcript.event("TLS started", tls=True)
    transcript.client("AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=", tls=True)
    transcript.server("235 2.7.0 Authentication successful", tls=True)
    return transcript


def test_transcript_view_shows_lines_and_hides_secrets_until_revealed():
    transcript = auth_transcript()
    view = TranscriptView(transcript)
    table = view.table.value
    assert "EHLO lab" in table and "AUTH PLAIN <span" in table and ">********</span>" in table
    assert "AGFsaWNl" not in table and "1 secret hidden" in view.caption.value
    assert table.count('class="smtplab-client"') == 3 and table.count('class="smtplab-server"') == 5
    assert table.count("\U0001f512") == 2 and table.count('title="inside TLS"') == 2
    assert "~&gt;" in table and "&lt;~" in table
    # Each reply's meaning comes from the library, beside its final line and on hover.
    for line in (transcript.lines[4], transcript.lines[-1]):
        assert line.meaning and f">{html.escape(line.meaning)}</td>" in table
    assert f'title="{html.escape(transcript.lines[3].meaning)}"' in table  # "250-…" too

    view.reveal.value = True
    assert "AGFsaWNlAHdvbmRlcmxhbmQ=" in view.table.value and "hidden" not in view.caption.value
    view.reveal.value = False
    assert "AGFsaWNl" not in view.table.value

    transcript.client("QUIT", tls=True)  # live: appended after the view was made
    assert "QUIT" in view.table.value and "11 lines" in view.caption.value
    view.close()
    transcript.client("NOOP")
    assert "NOOP" not in view.table.value, "a closed view no longer observes"
    assert not view.errors


def test_transcript_view_draws_only_the_newest_lines():
    transcript = smtplab.Transcript(title="busy")
    view = TranscriptView(transcript, max_rows=50)
    for n in range(2000):
        transcript.client(f"NOOP {n}")
    assert len(view.lines) == 50
    assert "NOOP 1999" in view.table.value and "NOOP 1949<" not in view.table.value
    assert view.table.value.count("<tr") == 50
    assert "2000 lines" in view.caption.value and "showing the last 50" in view.caption.value
    transcript.clear()
    transcript.client("EHLO again")
    assert "EHLO again" in view.table.value and "1 line" in view.caption.value
    view.close()


def test_transcript_view_can_switch_transcripts():
    first, second = smtplab.Transcript(), smtplab.Transcript()
    first.client("EHLO first")
    view = TranscriptView()
    assert "no transcript yet" in view.caption.value
    view.transcript = first
    assert "EHLO first" in view.table.value
    view.transcript = second
    first.client("NOOP from first")
    second.client("EHLO second")
    assert "EHLO second" in view.table.value and "first" not in view.table.value
    view.close()


def test_a_burst_of_lines_from_another_thread_costs_few_redraws():
    async def scenario() -> None:
        transcript = smtplab.Transcript(title="burst")
        view = TranscriptView(transcript)
        redraws: list[int] = []
        drawn = asyncio.Event()

        def on_table(change: dict[str, Any]) -> None:
            redraws.append(threading.get_ident())
            if "250 OK 1999<" in change["new"]:
                drawn.set()

        view.table.observe(on_table, names="value")

        def burst() -> None:  # as the lab server's thread records a busy session
            for n in range(2000):
                transcript.server(f"250 OK {n}")

        await asyncio.to_thread(burst)
        await asyncio.wait_for(drawn.wait(), 5)
        assert 1 <= len(redraws) <= 20 and set(redraws) == {threading.get_ident()}
        assert len(view.lines) == 500 and "2000 lines" in view.caption.value
        view.close()

    asyncio.run(scenario())
