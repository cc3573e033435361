"""The classroom exercises: the notebook's solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import json
import tempfile

import smtplab
from tests.exercises.harness import Wrong, exercise_tests

# -- 08.1: a private lab server on a shared machine ---------------------------------------------


def forgets_to_return(name):
    smtplab.start_server(name=name, unix_socket=True)


def never_started(name):
    return smtplab.LabServer(name=name, unix_socket=True)


def on_tcp(name):
    return smtplab.start_server(name=name)


def socket_in_tmp(name):
    return smtplab.start_server(name=name, unix_socket=f"{tempfile.gettempdir()}/{name}.sock")


def its_own_name(name):
    return smtplab.start_server(name="my-private-lab", unix_socket=True)


class Refusing:
    async def handle_DATA(self, server, session, envelope):
        return "554 5.7.1 nothing accepted here"


def refuses_everything(name):
    return smtplab.start_server(name=name, unix_socket=True, handler=Refusing())


# -- 08.2: hand in a session --------------------------------------------------------------------


def page_only(transcript, folder):
    transcript.save(folder / "session.html")


def in_a_folder_of_its_own(transcript, folder):
    (folder / "hand-in").mkdir()
    transcript.save(folder / "hand-in" / "session.html")
    transcript.save(folder / "hand-in" / "session.json")


def text_as_a_page(transcript, folder):
    (folder / "session.html").write_text(transcript.text(), encoding="utf-8")
    transcript.save(folder / "session.json")


def fragment_as_a_page(transcript, folder):
    (folder / "session.html").write_text(transcript.html(), encoding="utf-8")
    transcript.save(folder / "session.json")


def text_as_json(transcript, folder):
    transcript.save(folder / "session.html")
    (folder / "session.json").write_text(str(transcript), encoding="utf-8")


def secrets_revealed(transcript, folder):
    transcript.save(folder / "session.html", reveal_secrets=True)
    transcript.save(folder / "session.json", reveal_secrets=True)


def json_revealed(transcript, folder):
    transcript.save(folder / "session.html")
    data = transcript.to_dicts(reveal_secrets=True)
    (folder / "session.json").write_text(json.dumps(data), encoding="utf-8")


WRONG_ANSWERS = {
    "08.1": [
        Wrong("no-server", forgets_to_return, "starts it but returns nothing"),
        Wrong("not-running", never_started, "a LabServer never started"),
        Wrong("tcp", on_tcp, "the default TCP port"),
        Wrong("shared-directory", socket_in_tmp, "a socket in /tmp"),
        Wrong("ignores-name", its_own_name, "a name of its own"),
        Wrong("no-mail", refuses_everything, "a handler that refuses every message"),
    ],
    "08.2": [
        Wrong("no-data", page_only, "the page only"),
        Wrong("no-page", in_a_folder_of_its_own, "in a folder of its own inside the one given"),
        Wrong("not-a-page", text_as_a_page, "plain text in the .html file"),
        Wrong("not-a-page", fragment_as_a_page, "the HTML fragment without its page"),
        Wrong("not-json", text_as_json, "plain text in the .json file"),
        Wrong("secret-revealed", secrets_revealed, "reveal_secrets=True"),
        Wrong("secret-revealed", json_revealed, "revealed lines written by hand"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "classroom", WRONG_ANSWERS
)
