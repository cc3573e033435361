"""The handlers notebook's exercises: the solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import email.utils

import smtplab
from tests.exercises.harness import Wrong, exercise_tests

# -- 02.1: only one domain ------------------------------------------------------------------------


def domain_of(address):
    return address.rpartition("@")[2]


class CaseSensitive:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if domain_of(address) != "example.test":
            return "550 5.7.1 Only example.test here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class EndsWith:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not address.lower().endswith("example.test"):
            return "550 5.7.1 Only example.test here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class Contains:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "@example.test" not in address.lower():
            return "550 5.7.1 Only example.test here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class RefusesForNow:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if domain_of(address).lower() != "example.test":
            return "450 4.7.1 Only example.test here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class ForgetsTheEnvelope:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if domain_of(address).lower() != "example.test":
            return "550 5.7.1 Only example.test here"
        return "250 OK"


class Inverted:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if domain_of(address).lower() == "example.test":
            return "550 5.7.1 Only example.test here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class AcceptsEveryone:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"


class ForgetsToReturn:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if domain_of(address).lower() == "example.test":
            envelope.rcpt_tos.append(address)


class LowerCaseHook:
    async def handle_rcpt(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"


# -- 02.2: a relay --------------------------------------------------------------------------------


def received(session, server):
    return f"Received: from {session.host_name} by {server.hostname}; {email.utils.formatdate()}\r\n".encode()


class Relaying:
    def __init__(self, next_hop):
        self.host, self.port = next_hop

    async def forward(self, sender, recipients, content):
        async with smtplab.Client(host=self.host, port=self.port) as client:
            return await client.send(sender, recipients, content)


class NoReceivedHeader(Relaying):
    async def handle_DATA(self, server, session, envelope):
        result = await self.forward(envelope.mail_from, envelope.rcpt_tos, envelope.original_content)
        return "250 OK" if result.ok else f"{result.reply.code} {result.reply.message}"


class HeaderAtTheBottom(Relaying):
    async def handle_DATA(self, server, session, envelope):
        head, body = envelope.original_content.split(b"\r\n\r\n", 1)
        content = head + b"\r\n" + received(session, server) + b"\r\n" + body
        result = await self.forward(envelope.mail_from, envelope.rcpt_tos, content)
        return "250 OK" if result.ok else f"{result.reply.code} {result.reply.message}"


class HeaderWithoutDate(Relaying):
    async def handle_DATA(self, server, session, envelope):
        header = f"Received: from {session.host_name} by {server.hostname}\r\n".encode()
        result = await self.forward(envelope.mail_from, envelope.rcpt_tos, header + envelope.original_content)
        return "250 OK" if result.ok else f"{result.reply.code} {result.reply.message}"


class HeaderWithoutLineEnd(Relaying):
    async def handle_DATA(self, server, session, envelope):
        header = received(session, server).rstrip(b"\r\n")
        result = await self.forward(envelope.mail_from, envelope.rcpt_tos, header + envelope.original_content)
        return "250 OK" if result.ok else f"{result.reply.code} {result.reply.message}"


class OwnSender(Relaying):
    async def handle_DATA(self, server, session, envelope):
        content = received(session, server) + envelope.original_content
        result = await self.forward("relay@example.test", envelope.rcpt_tos, content)
        return "250 OK" if result.ok else f"{result.reply.code} {result.reply.message}"


class SaysOkAlways(Relaying):
    async def handle_DATA(self, server, session, envelope):
        await self.forward(
            envelope.mail_from, envelope.rcpt_tos, received(session, server) + envelope.original_content
        )
        return "250 OK"


class SaysTryLater(Relaying):
    async def handle_DATA(self, server, session, envelope):
        content = received(session, server) + envelope.original_content
        result = await self.forward(envelope.mail_from, envelope.rcpt_tos, content)
        return "250 OK" if result.ok else "451 4.4.0 Try again later"


class KeepsIt(Relaying):
    async def handle_DATA(self, server, session, envelope):
        return "250 OK: relayed"


class ForwardsBeforeConnecting(Relaying):
    async def handle_DATA(self, server, session, envelope):
        client = smtplab.Client(host=self.host, port=self.port)
        await client.data(envelope.original_content)
        return "250 OK"


class NoDataHook(Relaying):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"


# -- 02.3: predict the faults ------------------------------------------------------------------------

RIGHT = {"a": "returns", "b": "SMTPDataError", "c": "SMTPServerDisconnected"}

WRONG_ANSWERS = {
    "02.1": [
        Wrong("case", CaseSensitive, "compares the domain case-sensitively"),
        Wrong("suffix", EndsWith, "endswith('example.test')"),
        Wrong("substring", Contains, "'@example.test' in address"),
        Wrong("temporary", RefusesForNow, "450 instead of 550"),
        Wrong("not-added", ForgetsTheEnvelope, "250 without appending"),
        Wrong("refused-own", Inverted, "the test turned round"),
        Wrong("accepts-others", AcceptsEveryone, "accepts every recipient"),
        Wrong("hook-failed", ForgetsToReturn, "no return"),
        Wrong("no-rcpt-hook", LowerCaseHook, "handle_rcpt in lower case"),
    ],
    "02.2": [
        Wrong("no-received", NoReceivedHeader, "no Received header"),
        Wrong("received-not-on-top", HeaderAtTheBottom, "the header below the others"),
        Wrong("received-fields", HeaderWithoutDate, "no date in the header"),
        Wrong("content-changed", HeaderWithoutLineEnd, "the header without its CRLF"),
        Wrong("envelope-changed", OwnSender, "the relay's own sender"),
        Wrong("bounce-swallowed", SaysOkAlways, "250 whatever the next hop says"),
        Wrong("bounce-softened", SaysTryLater, "451 for a permanent refusal"),
        Wrong("not-forwarded", KeepsIt, "never connects to the next hop"),
        Wrong("hook-failed", ForwardsBeforeConnecting, "DATA on a client never connected"),
        Wrong("no-data-hook", NoDataHook, "no handle_DATA"),
    ],
    "02.3": [
        Wrong("partial-refusal", {**RIGHT, "a": "SMTPRecipientsRefused"}, "a refused recipient raises"),
        Wrong("rcpt-fault", {**RIGHT, "a": "SMTPSenderRefused"}, "RCPT taken for MAIL"),
        Wrong("temporary-is-a-refusal", {**RIGHT, "b": "returns"}, "451 taken for acceptance"),
        Wrong("end-of-data", {**RIGHT, "b": "SMTPRecipientsRefused"}, "end of data taken for RCPT"),
        Wrong("hang-up", {**RIGHT, "c": "SMTPSenderRefused"}, "a hang-up taken for a reply"),
        Wrong("missing", {"a": "returns", "b": "SMTPDataError"}, "only two predictions"),
        Wrong("unknown-reaction", {**RIGHT, "c": "smtpserverdisconnected"}, "lower case"),
        Wrong("not-a-dict", ["returns", "SMTPDataError", "SMTPServerDisconnected"], "a list"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "hooks", WRONG_ANSWERS
)
