"""CommandConsole driven as a learner would: type a command, click, read what it shows."""

from __future__ import annotations

import asyncio
import base64
import html
import re
import threading
from collections.abc import Iterator

import aiosmtpd
import pytest

import smtplab
from smtplab.protocol import State
from smtplab.widgets import CommandConsole


def shown(html_text: str) -> str:
    """What a reader sees in an HTML value: tags dropped (a space between blocks), entities decoded."""
    spaced = re.sub(r"<(br|/?div|/td|/th|/tr|span class=\"smtplab-)\b[^>]*>", " ", html_text)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", spaced))).strip()


def visible(console: CommandConsole) -> list[str]:
    return [verb for verb, button in console.buttons.items() if button.layout.display != "none"]


def type_in(console: CommandConsole, line: str) -> None:
    console.command.value = line
    console.send_button.click()


@pytest.fixture
def console(lab_server: smtplab.LabServer) -> Iterator[CommandConsole]:
    made = CommandConsole(lab_server)
    yield made
    made.close()
    assert not made.client.connected


def test_the_greeting_comes_first_then_each_reply_is_explained(console):
    assert console.client.connected and console.idle.is_set()
    assert "220 smtplab.test ESMTP" in shown(console.reply_view.value)
    assert "Now: connected (you are here)" in shown(console.diagram.value)
    assert visible(console) == ["EHLO", "HELO", "RSET", "VRFY", "EXPN", "NOOP", "HELP", "QUIT"]

    type_in(console, "EHLO me")

    assert console.command.value == "", "the command line is cleared for the next command"
    reply = shown(console.reply_view.value)
    assert reply.startswith("You sent EHLO me The server answered Done (2yz) 250-smtplab.test")
    assert "Meaning: 250 — Hello accepted; the lines after the first name the server's extensions" in reply
    assert "State: connected → greeted: EHLO or HELO was accepted" in reply
    assert "Now: greeted (you are here)" in shown(console.diagram.value)
    assert "smtplab-state-now" in console.diagram.value  # highlighted in the picture too
    assert visible(console) == ["EHLO", "HELO", "MAIL", "RSET", "VRFY", "EXPN", "NOOP", "HELP", "QUIT"]
    assert "the EHLO reply offered: SIZE 10485760, 8BITMIME" in shown(console.status.value)
    step = console.steps[-1]
    assert (step.kind, step.sent, step.reply.code, step.before, step.after) == (
        "command",
        "EHLO me",
        250,
        State.CONNECTED,
        State.GREETED,
    )
    assert "EHLO me" in console.transcript_view.table.value


def test_a_503_is_explained_by_the_state_machine(console):
    type_in(console, "MAIL FROM:<alice@example.test>")  # before EHLO
    reply = shown(console.reply_view.value)
    assert "The server answered Refused (5yz) 503" in reply
    assert "Why: MAIL FROM needs a greeting first: send EHLO (or HELO)" in reply
    console.buttons["EHLO"].click()
    type_in(console, "DATA")
    step = console.steps[-1]
    assert step.reply.code == 503 and step.prediction.startswith("DATA needs at least one accepted RCPT TO")
    reply = shown(console.reply_view.value)
    assert "503 5.5.1 Error: need RCPT command" in reply and "Meaning: 503 5.5.1 — " in reply
    assert f"Why: {step.prediction}" in reply and "State: still greeted" in reply
    assert "DATA" not in visible(console), "the button for DATA appears only when it is valid"
    console.buttons["NOOP"].click()
    earlier = shown(console.reply_view.value).split("Earlier, newest first", 1)[1]
    assert earlier.startswith(f"DATA → 503 5.5.1 Error: need RCPT command (Refused) Why: {step.prediction}")
    assert "EHLO client.smtplab.test → 250 HELP (Done)" in earlier and earlier.endswith(
        f"connected → 220 smtplab.test ESMTP smtplab (aiosmtpd {aiosmtpd.__version__}) (Done)"
    )


def test_it_says_so_when_the_lab_server_stops(console, lab_server):
    lab_server.stop()
    assert "not connected: the lab server 'test-test_it_says_so_when_the_lab_server_stops' has stopped" in (
        shown(console.status.value)
    )
    assert visible(console) == [] and not console.connect_button.disabled


def test_a_data_session_line_by_line_shows_dot_stuffing_as_it_happens(console, lab_server):
    for verb in ("EHLO", "MAIL", "RCPT", "DATA"):
        console.buttons[verb].click()
    assert console.client.state.state is State.DATA and visible(console) == ["."]
    assert "Now type the message, one line at a time" in shown(console.reply_view.value)
    assert "a line of the message" in console.command.placeholder
    for line in ("Subject: Typed by hand", "", "Hello Bob,"):
        type_in(console, line)
    assert "No reply: the server takes each line as part of the message" in shown(console.reply_view.value)

    type_in(console, ".hidden")

    message = shown(console.data_view.value)
    assert ".hidden ..hidden CR LF dot-stuffed: a line starting with . gets one more" in message
    assert console.steps[-1].wire == b"..hidden\r\n" and console.steps[-1].reply is None

    console.buttons["."].click()  # the same as typing a lone "."

    reply = shown(console.reply_view.value)
    assert "You sent . The server answered Done (2yz) 250" in reply and "data → greeted" in reply
    assert ". . CR LF a line holding only . : the end of the message" in shown(console.data_view.value)
    captured = lab_server.mailbox.wait_for(1)[0]
    assert captured.raw == b"Subject: Typed by hand\r\n\r\nHello Bob,\r\n.hidden\r\n"
    assert captured.rcpt_tos == ("bob@example.test",) and captured.mail_from == "alice@example.test"


def test_the_raw_wire_shows_every_byte_both_ways_with_cr_lf_visible(console):
    assert console.wire_view.layout.display == "none"
    console.buttons["EHLO"].click()
    console.wire_toggle.value = True
    assert console.wire_view.layout.display is None and console.wire_toggle.description == "Hide raw bytes"
    wire = shown(console.wire_view.value)
    assert f"← server 220 smtplab.test ESMTP smtplab (aiosmtpd {aiosmtpd.__version__}) CR LF" in wire
    assert "client → EHLO client.smtplab.test CR LF ← server 250-smtplab.test CR LF ← server 250-SIZE" in wire
    assert "CR LF = the two bytes \\r\\n (13, 10) that end every SMTP line" in wire
    console.buttons["NOOP"].click()
    assert shown(console.wire_view.value).endswith("client → NOOP CR LF ← server 250 2.0.0 OK CR LF")
    console.wire_toggle.value = False
    assert console.wire_view.layout.display == "none"


def test_enter_in_the_command_line_sends_it(console):
    console.command.value = "NOOP"
    console.command._handle_custom_msg({"event": "submit"}, [])  # what the browser sends on Enter
    assert console.steps[-1].sent == "NOOP" and console.steps[-1].reply.code == 250


def test_an_empty_line_or_no_connection_sends_nothing_and_says_why(lab_server):
    console = CommandConsole(lab_server, connect=False)
    try:
        assert not console.client.connected and console.connect_button.description == "Connect"
        type_in(console, "NOOP")
        assert "You typed NOOP Nothing sent: Not connected: press Connect" in shown(console.reply_view.value)
        console.connect_button.click()
        assert console.client.connected and console.connect_button.disabled
        type_in(console, "  ")
        assert "Nothing sent: Type a command first" in shown(console.reply_view.value)
        console.buttons["QUIT"].click()
        assert "greeted" not in shown(console.reply_view.value) and "connected → closed" in shown(
            console.reply_view.value
        )
        assert "Now: closed (you are here)" in shown(console.diagram.value) and visible(console) == []
        assert not console.connect_button.disabled and console.connect_button.description == "Connect again"
        console.connect_button.click()
        assert console.client.state.state is State.CONNECTED and "220" in shown(console.reply_view.value)
    finally:
        console.close()


def test_an_extension_the_server_did_not_offer_is_predicted_and_refused():
    with smtplab.start_server(name="console-plain", extensions={"HELP": False, "SIZE": False}) as server:
        console = CommandConsole(server)
        try:
            console.buttons["EHLO"].click()
            assert "HELP" not in visible(console)
            type_in(console, "HELP")
            reply = shown(console.reply_view.value)
            assert "Refused (5yz) 502 5.5.1 HELP not implemented" in reply
            assert (
                "Why: The server's EHLO reply did not offer HELP (RFC 5321). A server without it: HELP gets 502"
                in reply
            )
            type_in(console, "MAIL FROM:<alice@example.test> SIZE=100")
            assert (
                console.steps[-1].reply.code == 555 and "did not offer SIZE" in console.steps[-1].prediction
            )
        finally:
            console.close()


def test_an_auth_challenge_is_decoded_and_the_answers_are_masked():
    users = {"alice": "wonderland"}
    with smtplab.start_server(name="console-auth", auth=users, auth_require_tls=False) as server:
        console = CommandConsole(server)
        try:
            console.buttons["EHLO"].click()
            console.buttons["AUTH"].click()
            assert "The server asks (base64 decoded): User Name" in shown(console.reply_view.value)
            assert visible(console) == [] and "type your answer (base64)" in console.command.placeholder
            for answer in ("alice", "wonderland"):
                type_in(console, base64.b64encode(answer.encode()).decode())
            step = console.steps[-1]
            assert step.kind == "answer" and step.sent == "********" and step.reply.code == 235
            assert "d29uZGVybGFuZA" not in console.reply_view.value + console.transcript_view.table.value
        finally:
            console.close()


@pytest.mark.server_options(tls="starttls")
def test_starttls_from_the_console_turns_the_connection_to_tls(console):
    console.buttons["EHLO"].click()
    console.buttons["STARTTLS"].click()
    assert console.client.tls_active and console.client.state.state is State.CONNECTED
    assert "(inside TLS)" in shown(console.status.value) and visible(console)[:2] == ["EHLO", "HELO"]
    console.wire_toggle.value = True
    console.buttons["NOOP"].click()
    assert 'title="inside TLS"' in console.wire_view.value.split("NOOP")[0].rsplit("<tr", 1)[1]


def test_it_drives_a_client_or_a_sync_client_it_is_given(lab_server):
    with smtplab.SyncClient(lab_server) as sync:
        console = CommandConsole(sync)
        assert console.client is sync.client and "220" in shown(console.reply_view.value)
        type_in(console, "NOOP")
        assert console.steps[-1].reply.code == 250
        console.close()
    with pytest.raises(TypeError, match="a LabServer, a Client or a SyncClient, not str"):
        CommandConsole("127.0.0.1:25")


def test_in_a_kernel_commands_run_in_order_on_its_loop(lab_server):
    async def scenario() -> None:
        loop_thread = threading.get_ident()
        console = CommandConsole(lab_server)
        try:
            assert not console.idle.is_set(), "connecting, on this loop"
            threads: list[int] = []
            console.reply_view.observe(lambda change: threads.append(threading.get_ident()), names="value")
            for line in ("EHLO me", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA"):
                type_in(console, line)  # queued: each waits for the one before
            last = console.last_future
            await asyncio.wait_for(asyncio.wrap_future(last), 10)
            assert console.idle.is_set() and last.result().reply.code == 354
            assert [step.reply.code for step in console.steps] == [220, 250, 250, 250, 354]
            assert set(threads) == {loop_thread}
            for line in ("Subject: from a kernel", "", "..", "."):
                console.submit(line)
            final = await asyncio.wait_for(asyncio.wrap_future(console.last_future), 10)
            assert final.reply.code == 250 and console.steps[-2].wire == b"...\r\n"
        finally:
            console.close()
            await asyncio.sleep(0)  # let the close run

    asyncio.run(scenario())
    assert lab_server.mailbox.wait_for(1)[0].raw == b"Subject: from a kernel\r\n\r\n..\r\n"


def test_commands_waiting_their_turn_end_quietly_when_the_kernel_stops(lab_server):
    async def scenario() -> None:
        console = CommandConsole(lab_server)
        futures = [console.submit("NOOP") for _ in range(3)]  # queued behind the connection
        tasks = list(console._tasks)
        for task in tasks:
            task.cancel()  # what a kernel shutting down does to its tasks
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(future.cancelled() for future in futures) and console.idle.is_set()
        console.close()
        await asyncio.sleep(0)

    asyncio.run(scenario())  # and no "coroutine was never awaited" when they are collected


def test_the_command_line_is_said_back_as_the_kernel_holds_it(console):
    console.command.value = "NOOP <b>"
    assert shown(console.next_line.value) == "Send or Enter sends: NOOP <b>"  # escaped, then read back
    console.send_button.click()
    assert console.command.value == "" and console.next_line.value == ""


def test_typing_keeps_the_last_actions_error_in_view(console):
    console.report_error(ValueError("the last action failed"))

    console.command.value = "NOOP"

    assert "the last action failed" in shown(console.error_line.value)
    assert shown(console.next_line.value) == "Send or Enter sends: NOOP"
