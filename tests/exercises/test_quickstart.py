"""The quickstart's exercises: the notebook's solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import asyncio

import smtplab
from tests.exercises.harness import Wrong, exercise_tests

CONTENT = "Subject: Exercise\r\n\r\nHello.\r\n"


# -- 00.1: one message, two recipients ----------------------------------------------------------


async def one_send_per_recipient(server):
    async with smtplab.Client(server) as client:
        for recipient in ["carol@example.test", "dave@example.test"]:
            await client.send("you@example.test", recipient, CONTENT)


async def only_one_recipient(server):
    async with smtplab.Client(server) as client:
        await client.send("you@example.test", "carol@example.test", CONTENT)


async def both_in_one_string(server):
    async with smtplab.Client(server) as client:
        await client.send("you@example.test", ["carol@example.test, dave@example.test"], CONTENT)


async def malformed_address(server):
    async with smtplab.Client(server) as client:
        await client.send("you@example.test", ["carol@", "dave@example.test"], CONTENT)


async def same_address_twice(server):
    async with smtplab.Client(server) as client:
        await client.send("you@example.test", ["carol@example.test", "carol@example.test"], CONTENT)


async def send_not_awaited(server):
    async with smtplab.Client(server) as client:
        client.send("you@example.test", ["carol@example.test", "dave@example.test"], CONTENT)


async def client_never_used(server):
    smtplab.Client(server)


async def connects_but_sends_nothing(server):
    async with smtplab.Client(server) as client:
        await client.ehlo()


async def waits_forever(server):
    async with smtplab.Client(server) as client:
        await client.ehlo()
        await asyncio.Event().wait()


# -- 00.2: find a message by its envelope -------------------------------------------------------


def first_match(mailbox, recipient):
    return next(message for message in mailbox if recipient in message.rcpt_tos)


def by_to_header(mailbox, recipient):
    for message in reversed(mailbox):
        if message.message["To"] == recipient:
            return message
    return None


def compares_the_tuple(mailbox, recipient):
    for message in reversed(mailbox):
        if message.rcpt_tos == recipient:
            return message
    return None


def returns_the_envelope(mailbox, recipient):
    for message in reversed(mailbox):
        if recipient in message.rcpt_tos:
            return message.rcpt_tos
    return None


def newest_regardless(mailbox, recipient):
    return mailbox.latest


def raises_when_missing(mailbox, recipient):
    return [message for message in mailbox if recipient in message.rcpt_tos][-1]


def newest_when_missing(mailbox, recipient):
    matches = [message for message in mailbox if recipient in message.rcpt_tos]
    return matches[-1] if matches else mailbox[-1]


WRONG_ANSWERS = {
    "00.1": [
        Wrong("two-messages", one_send_per_recipient, "one send per recipient"),
        Wrong("one-recipient", only_one_recipient, "a single address"),
        Wrong("one-string", both_in_one_string, "both addresses in one string"),
        Wrong("refused", malformed_address, "an address without a domain"),
        Wrong("same-recipient", same_address_twice, "the same address twice"),
        Wrong("not-awaited", send_not_awaited, "send without await"),
        Wrong("never-connected", client_never_used, "a client never connected"),
        Wrong("nothing-sent", connects_but_sends_nothing, "connected, sent nothing"),
        Wrong("timed-out", waits_forever, "waits for ever"),
    ],
    "00.2": [
        Wrong("oldest", first_match, "the first match"),
        Wrong("header", by_to_header, "matches the To header"),
        Wrong("found-nothing", compares_the_tuple, "rcpt_tos == recipient"),
        Wrong("not-a-message", returns_the_envelope, "returns .rcpt_tos"),
        Wrong("not-matching", newest_regardless, "the newest message, whoever it is for"),
        Wrong("none-raises", raises_when_missing, "IndexError when nothing matches"),
        Wrong("found-missing", newest_when_missing, "the newest message when nothing matches"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "quickstart", WRONG_ANSWERS
)
