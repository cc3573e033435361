"""The AUTH notebook's exercises: the notebook's solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import base64
import hashlib
import hmac

import smtplab
from tests.exercises.harness import Wrong, exercise_tests

RIGHT = base64.b64encode(b"\0alice\0wonderland").decode("ascii")
AS_PRINTED = str(base64.b64encode(b"\0alice\0wonderland"))  # "b'AGFs…'": bytes in an f-string


# -- 05.1: AUTH PLAIN by hand ---------------------------------------------------------------------


def plain_with(argument: str, *, tls: str | None = "starttls", ehlo: bool = True):
    async def log_in(server):
        async with smtplab.Client(server, tls=tls) as client:
            if ehlo:
                await client.ehlo()
            return await client.raw(f"AUTH PLAIN {argument}")

    return log_in


async def never_sends_auth(server):
    async with smtplab.Client(server, tls="starttls") as client:
        await client.ehlo()


async def auth_not_awaited(server):
    async with smtplab.Client(server, tls="starttls") as client:
        await client.ehlo()
        client.raw(f"AUTH PLAIN {RIGHT}")


async def no_client_at_all(server):
    return RIGHT


async def lets_login_choose_login(server):
    async with smtplab.Client(server, tls="starttls") as client:
        await client.ehlo()
        return await client.login("alice", "wonderland", mechanism="LOGIN")


async def cancels_with_a_star(server):
    async with smtplab.Client(server, tls="starttls") as client:
        await client.ehlo()
        await client.raw("AUTH PLAIN")
        return await client.raw("*")


# -- 05.2: a CRAM-MD5 answer by hand ---------------------------------------------------------------


def digest_of(challenge, password, *, key=None, message=None, name="md5"):
    return hmac.new(key or password.encode(), message or base64.b64decode(challenge), name).hexdigest()


def answer_from(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def returns_bytes(challenge, user, password):
    return base64.b64encode(f"{user} {digest_of(challenge, password)}".encode())


def returns_none(challenge, user, password):
    print(answer_from(f"{user} {digest_of(challenge, password)}"))


def with_a_newline(challenge, user, password):
    return answer_from(f"{user} {digest_of(challenge, password)}") + "\n"


def not_encoded(challenge, user, password):
    return f"{user} {digest_of(challenge, password)}"


def digest_only(challenge, user, password):
    return answer_from(digest_of(challenge, password))


def sha256_instead(challenge, user, password):
    return answer_from(f"{user} {digest_of(challenge, password, name='sha256')}")


def raw_digest_bytes(challenge, user, password):
    raw = hmac.new(password.encode(), base64.b64decode(challenge), "md5").digest()
    return base64.b64encode(user.encode() + b" " + raw).decode("ascii")


def signs_the_base64(challenge, user, password):
    return answer_from(f"{user} {digest_of(challenge, password, message=challenge.encode())}")


def key_and_message_swapped(challenge, user, password):
    decoded = base64.b64decode(challenge)
    return answer_from(f"{user} {digest_of(challenge, password, key=decoded, message=password.encode())}")


def md5_of_both(challenge, user, password):
    glued = password.encode() + base64.b64decode(challenge)
    return answer_from(f"{user} {hashlib.md5(glued).hexdigest()}")


def wrong_password(challenge, user, password):
    return answer_from(f"{user} {digest_of(challenge, 'Wonderland')}")


def wrong_user(challenge, user, password):
    return answer_from(f"Alice {digest_of(challenge, password)}")


def str_key(challenge, user, password):
    return answer_from(f"{user} {hmac.new(password, base64.b64decode(challenge), 'md5').hexdigest()}")


WRONG_ANSWERS = {
    "05.1": [
        Wrong("no-auth", never_sends_auth, "never sends AUTH"),
        Wrong("not-awaited", auth_not_awaited, "raw() without await"),
        Wrong("never-connected", no_client_at_all, "computes the string, never connects"),
        Wrong("in-clear", plain_with(RIGHT, tls=None), "AUTH before STARTTLS"),
        Wrong("no-ehlo", plain_with(RIGHT, ehlo=False), "no EHLO after STARTTLS"),
        Wrong("other-mechanism", lets_login_choose_login, "login() with LOGIN"),
        Wrong("bytes-repr", plain_with(AS_PRINTED), "bytes in the f-string"),
        Wrong("not-base64", plain_with("alice:wonderland"), "not encoded"),
        Wrong("separator", plain_with(base64.b64encode(b"alice:wonderland").decode()), "a colon between"),
        Wrong("missing-nul", plain_with(base64.b64encode(b"alice\0wonderland").decode()), "no leading NUL"),
        Wrong("wrong-credentials", plain_with(base64.b64encode(b"\0Alice\0wonderland").decode()), "Alice"),
        Wrong("refused", cancels_with_a_star, "cancels the exchange"),
        Wrong("raised", plain_with(RIGHT + "\r\n"), "a line break in the command"),
    ],
    "05.2": [
        Wrong("returned-bytes", returns_bytes, "base64 bytes"),
        Wrong("not-text", returns_none, "prints instead of returning"),
        Wrong("line-break", with_a_newline, "a newline at the end"),
        Wrong("not-base64", not_encoded, "the answer not encoded"),
        Wrong("no-user", digest_only, "the digest alone"),
        Wrong("wrong-hash", sha256_instead, "HMAC-SHA256"),
        Wrong("not-hex", raw_digest_bytes, "digest() instead of hexdigest()"),
        Wrong("challenge-not-decoded", signs_the_base64, "signs the base64 text"),
        Wrong("swapped", key_and_message_swapped, "key and message swapped"),
        Wrong("plain-md5", md5_of_both, "MD5 of password + challenge"),
        Wrong("wrong-digest", wrong_password, "another password"),
        Wrong("wrong-user", wrong_user, "Alice"),
        Wrong("raised", str_key, "a str as the HMAC key"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "authentication", WRONG_ANSWERS
)
