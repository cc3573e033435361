"""The SMTP conversation's exercises: the notebook's solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import smtplib
import socket

from smtplab.exercises import check
from smtplab.exercises.conversation import (
    BLANK,
    SOCKET_LINES,
    _ordered,
    _replies,
    blanked_transcript,
    shuffled_transcript,
)
from tests.exercises.harness import Wrong, exercise_tests

# -- 03.1: a client with a socket only -------------------------------------------------------------


def hand_written(
    *,
    read_greeting=True,
    ending=b"\r\n",
    wait=True,
    hello="EHLO me.example.test",
    mail="MAIL FROM:<{sender}>",
    data=True,
    stuff=True,
    end=True,
    quit=True,
    copies=1,
    sender=None,
    recipient=None,
    content=None,
):
    """A learner's socket client, right by default; each keyword is one way to get it wrong."""

    def send_with_socket(address, given_sender, given_recipient, lines):
        sender_, recipient_ = sender or given_sender, recipient or given_recipient
        with socket.create_connection(address, timeout=5) as sock, sock.makefile("rb") as server:

            def reply():
                line = server.readline()
                while line[3:4] == b"-":
                    line = server.readline()
                return line

            def command(text, answered=True):
                sock.sendall(text.encode() + ending)
                if answered and wait:
                    reply()

            if read_greeting:
                reply()
            if not wait:  # everything at once, the replies read afterwards
                commands = [hello, mail.format(sender=sender_), f"RCPT TO:<{recipient_}>", "DATA"]
                sock.sendall(b"".join(c.encode() + ending for c in commands))
                for _ in commands:
                    reply()
            else:
                command(hello)
                for _ in range(copies):
                    command(mail.format(sender=sender_))
                    command(f"RCPT TO:<{recipient_}>")
                    if not data:
                        continue
                    command("DATA")
                    for line in content if content is not None else lines:
                        if stuff and line.startswith("."):
                            line = "." + line
                        sock.sendall(line.encode() + ending)
                    if not end:
                        sock.sendall(b"QUIT\r\n")
                        return
                    command(".")
            if quit:
                command("QUIT")

    return send_with_socket


def with_smtplib(address, sender, recipient, lines):
    with smtplib.SMTP(*address) as client:
        client.sendmail(sender, [recipient], "\r\n".join(lines))


def does_nothing(address, sender, recipient, lines):
    return None


# -- 03.2: a shuffled transcript ---------------------------------------------------------------------


def moved(lines, line, before):
    """``lines`` with ``line`` taken out and put back just before ``before``."""
    out = [x for x in lines if x != line]
    out.insert(out.index(before), line)
    return out


def swapped(lines, a, b):
    out = list(lines)
    i, j = out.index(a), out.index(b)
    out[i], out[j] = out[j], out[i]
    return out


RIGHT = list(_ordered())
MAIL, RCPT_BOB = "C: MAIL FROM:<alice@example.test>", "C: RCPT TO:<bob@example.test>"
EHLO_LAST, EHLO_SIZE = "S: 250 HELP", "S: 250-SIZE 10485760"
QUEUED = next(line for line in RIGHT if "queued as" in line)
DATA_GO = next(line for line in RIGHT if line.startswith("S: 354"))


def rcpt_before_mail():
    out = list(RIGHT)
    i = out.index(MAIL)
    mail_exchange, rcpt_exchange = out[i : i + 2], out[i + 2 : i + 4]
    out[i : i + 4] = rcpt_exchange + mail_exchange
    return out


def mail_reply_after_rcpt():
    out = list(RIGHT)
    i = out.index(MAIL)
    out[i + 1], out[i + 2] = out[i + 2], out[i + 1]  # MAIL, RCPT, 250, 250
    return out


# -- 03.3: reply codes -------------------------------------------------------------------------------

CODES = [code for _, code, _ in _replies()]


def test_the_puzzles_are_real_sessions_shown_with_gaps():
    assert sorted(shuffled_transcript()) == sorted(RIGHT) and shuffled_transcript() != RIGHT
    assert RIGHT[0].startswith("S: 220 ") and RIGHT[-1] == "S: 221 2.0.0 Bye" and "C: ." in RIGHT
    blanked = blanked_transcript()
    assert [line for line in blanked if line.startswith("S: ")] and all(
        line.startswith(f"S: {BLANK}") for line in blanked if line.startswith("S: ")
    )
    assert CODES == [220, 250, 250, 503, 250, 354, 250, 252, 221]
    assert "C: .this" not in RIGHT and f"C: {SOCKET_LINES[0]}" not in RIGHT


WRONG_ANSWERS = {
    "03.1": [
        Wrong("used-a-library", with_smtplib, "smtplib instead of a socket"),
        Wrong("never-connected", does_nothing, "never connects"),
        Wrong("greeting-not-read", hand_written(read_greeting=False), "talks before the greeting"),
        Wrong("line-endings", hand_written(ending=b"\n"), "bare LF line endings"),
        Wrong("not-waiting", hand_written(wait=False), "all commands in one packet"),
        Wrong("no-end-of-data", hand_written(end=False), "no '.' line"),
        Wrong("refused", hand_written(hello="HELLO there"), "HELLO instead of EHLO"),
        Wrong("incomplete", hand_written(data=False), "no DATA"),
        Wrong("dot-not-doubled", hand_written(stuff=False), "no dot-stuffing"),
        Wrong("several-messages", hand_written(copies=2), "the message twice"),
        Wrong("ignored-arguments", hand_written(recipient="bob@example.test"), "a fixed recipient"),
        Wrong("content-differs", hand_written(content=[SOCKET_LINES[0], *SOCKET_LINES[2:]]), "no blank line"),
        Wrong("no-quit", hand_written(quit=False), "closes without QUIT"),
    ],
    "03.2": [
        Wrong("not-a-list", "\n".join(RIGHT), "one string"),
        Wrong("changed-lines", RIGHT[:-1], "a line dropped"),
        Wrong("greeting-first", moved(RIGHT, RIGHT[0], RIGHT[2]), "EHLO first"),
        Wrong("multiline", swapped(RIGHT, EHLO_LAST, EHLO_SIZE), "a multi-line reply out of order"),
        Wrong("command-without-reply", mail_reply_after_rcpt(), "two commands in a row"),
        Wrong("wrong-reply", swapped(RIGHT, DATA_GO, QUEUED), "354 and 250 swapped"),
        Wrong("sequence", rcpt_before_mail(), "RCPT before MAIL"),
        Wrong(
            "content-order",
            swapped(RIGHT, "C: Subject: Lunch?", "C: Noon, at the usual place?"),
            "body first",
        ),
    ],
    "03.3": [
        Wrong("not-a-list", "220 250 250", "one string"),
        Wrong(
            "wrong-count",
            [220, 250, 250, 250, 250, 250, 250, 250, 503, 250, 354, 250, 252, 221],
            "a code per line",
        ),
        Wrong("enhanced-disagrees", [220, 250, 250, 503, 250, 354, 354, 252, 221], "354 for a 2.0.0 reply"),
        Wrong("greeting", [250, 250, 250, 503, 250, 354, 250, 252, 221], "250 for the greeting"),
        Wrong("intermediate", [220, 250, 250, 503, 250, 250, 250, 252, 221], "250 after DATA"),
        Wrong("sequence", [220, 250, 250, 500, 250, 354, 250, 252, 221], "500 for DATA out of order"),
        Wrong("vrfy", [220, 250, 250, 503, 250, 354, 250, 250, 221], "250 for VRFY"),
        Wrong("goodbye", [220, 250, 250, 503, 250, 354, 250, 252, 250], "250 for QUIT"),
        Wrong("wrong-code", [220, 200, 250, 503, 250, 354, 250, 252, 221], "200 for EHLO"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "conversation", WRONG_ANSWERS
)


def test_a_client_that_uses_its_own_message_is_told_to_use_the_lines_given():
    verdict = check("03.1", hand_written(content=["Subject: mine", "", "hi"]))
    assert verdict.mistake == "content-differs" and "the lines given make" in verdict.message
