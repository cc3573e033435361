"""The messages-and-MIME notebook's exercises: the solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage

from tests.exercises.harness import Wrong, exercise_tests

TEXT = "Hello Bob,\nthe figures are attached.\n"
HTML = "<p>Hello Bob,</p><p>the figures are <b>attached</b>.</p>"
CSV = b"month,total\nMay,12\n"


# -- 04.1: text, HTML and an attachment -------------------------------------------------------------


def addressed() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alice@example.test"
    message["To"] = "bob@example.test"
    message["Subject"] = "Figures"
    return message


def headers_as_text():
    return "From: alice@example.test\r\nTo: bob@example.test\r\n\r\nHello"


def no_to_header():
    message = EmailMessage()
    message["From"] = "alice@example.test"
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    message.add_attachment(CSV, maintype="text", subtype="csv", filename="figures.csv")
    return message


def text_only():
    message = addressed()
    message.set_content(TEXT)
    message.add_attachment(CSV, maintype="text", subtype="csv", filename="figures.csv")
    return message


def html_as_attachment():
    message = addressed()
    message.set_content(TEXT)
    message.add_attachment(HTML.encode(), maintype="text", subtype="html", filename="letter.html")
    message.add_attachment(CSV, maintype="text", subtype="csv", filename="figures.csv")
    return message


def html_first():
    message = addressed()
    message.set_content(HTML, subtype="html")
    message.add_alternative(TEXT)
    message.add_attachment(CSV, maintype="text", subtype="csv", filename="figures.csv")
    return message


def everything_an_alternative():
    message = addressed()
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    message.add_alternative(CSV, maintype="text", subtype="csv", filename="figures.csv")
    return message


def nothing_attached():
    message = addressed()
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    return message


def attachment_without_a_name():
    message = addressed()
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    message.add_attachment(CSV, maintype="text", subtype="csv")
    return message


def alternative_after_attachment():
    message = addressed()
    message.set_content(TEXT)
    message.add_attachment(CSV, maintype="text", subtype="csv", filename="figures.csv")
    message.add_alternative(HTML, subtype="html")  # ValueError: a mixed part takes no alternatives
    return message


# -- 04.2: the recipient no header names --------------------------------------------------------


def header_addresses(message):
    values = [str(v) for name in ("To", "Cc") for v in message.message.get_all(name, [])]
    return {address.lower() for _, address in email.utils.getaddresses(values)}


def returns_one_string(message):
    hidden = [r for r in message.rcpt_tos if r.lower() not in header_addresses(message)]
    return hidden[0] if hidden else ""


def every_recipient(message):
    return list(message.rcpt_tos)


def headers_not_in_envelope(message):
    return [a for a in header_addresses(message) if a not in message.rcpt_tos]


def whole_header_values(message):
    values = [str(message.message[name]) for name in ("To", "Cc") if message.message[name] is not None]
    return [r for r in message.rcpt_tos if r not in values]


def to_header_only(message):
    named = {a for _, a in email.utils.getaddresses([str(message.message["To"])])}
    return [r for r in message.rcpt_tos if r not in named]


def searches_the_whole_message(message):
    text = message.raw.decode()
    return [r for r in message.rcpt_tos if r not in text]


def reads_the_bcc_header(message):
    return [a for _, a in email.utils.getaddresses(message.message.get_all("Bcc", []))]


def local_parts(message):
    return [r.split("@")[0] for r in message.rcpt_tos if r.lower() not in header_addresses(message)]


WRONG_ANSWERS = {
    "04.1": [
        Wrong("not-a-message", headers_as_text, "headers written as a string"),
        Wrong("no-addresses", no_to_header, "no To header"),
        Wrong("no-html", text_only, "plain text only"),
        Wrong("not-alternative", html_as_attachment, "the HTML attached as a file"),
        Wrong("html-first", html_first, "the HTML first"),
        Wrong("attachment-inside", everything_an_alternative, "the file added as an alternative"),
        Wrong("no-attachment", nothing_attached, "nothing attached"),
        Wrong("no-filename", attachment_without_a_name, "an attachment without a name"),
        Wrong("raised", alternative_after_attachment, "the HTML added after the attachment"),
    ],
    "04.2": [
        Wrong("not-a-collection", returns_one_string, "one address as a string"),
        Wrong("everyone", every_recipient, "every envelope recipient"),
        Wrong("backwards", headers_not_in_envelope, "header addresses not in the envelope"),
        Wrong("display-names", whole_header_values, "header values compared whole"),
        Wrong("cc-missed", to_header_only, "To: only"),
        Wrong("body", searches_the_whole_message, "searches the body too"),
        Wrong("found-none", reads_the_bcc_header, "reads the Bcc header"),
        Wrong("not-matching", local_parts, "local parts only"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "messages", WRONG_ANSWERS
)
