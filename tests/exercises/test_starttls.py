"""The SSL and STARTTLS notebook's exercises: its solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import hashlib
import smtplib
import ssl

import aiosmtplib
from cryptography import x509

import smtplab
from smtplab.exercises.starttls import MYSTERIES, start_mysteries
from tests.exercises.harness import Wrong, exercise_tests

CONTENT = "Subject: 06.3\r\n\r\nSent only inside TLS.\r\n"

# -- 06.1: three mystery servers ------------------------------------------------------------------

RIGHT = {
    "A": {"tls": "implicit", "host": "127.0.0.1"},
    "B": {"tls": None, "host": "127.0.0.1"},
    "C": {"tls": "starttls", "host": "localhost"},
}


def changed(letter: str, **settings: object) -> dict[str, dict[str, object]]:
    return {**RIGHT, letter: {**RIGHT[letter], **settings}}


def test_the_mysteries_are_three_modes_and_one_certificate_for_another_name():
    mysteries = start_mysteries(name="test-mystery")
    try:
        assert sorted(mysteries) == ["A", "B", "C"] and len(mysteries) == 3
        assert all(host == "127.0.0.1" for host, _ in mysteries.values())
        assert repr(mysteries).startswith("<Mysteries A: 127.0.0.1:")
        servers = {s.name: s for s in smtplab.running_servers()}
        assert {servers[f"test-mystery-{x}"].tls for x in "abc"} == {None, "starttls", "implicit"}
        assert servers["test-mystery-c"].lab_tls.hosts == ("localhost",) == MYSTERIES["C"][1]
    finally:
        mysteries.stop()
        mysteries.stop()
    assert not smtplab.running_servers()


# -- 06.2: a certificate's names and fingerprint --------------------------------------------------------


def der(pem):
    return ssl.PEM_cert_to_DER_cert(pem)


def san(pem):
    certificate = x509.load_pem_x509_certificate(pem.encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names


def names_only(pem):
    return [str(name.value) for name in san(pem)]


def common_name_instead(pem):
    certificate = x509.load_pem_x509_certificate(pem.encode())
    common = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    return [common], hashlib.sha256(der(pem)).hexdigest()


def dns_names_only(pem):
    return san(pem).get_values_for_type(x509.DNSName), hashlib.sha256(der(pem)).hexdigest()


def the_issuer_instead(pem):
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return [certificate.issuer.rfc4514_string()], hashlib.sha256(der(pem)).hexdigest()


def hash_of_the_pem_text(pem):
    return names_only(pem), hashlib.sha256(pem.encode()).hexdigest()


def sha1_fingerprint(pem):
    return names_only(pem), hashlib.sha1(der(pem)).hexdigest()


def hash_of_the_names(pem):
    return names_only(pem), hashlib.sha256(",".join(names_only(pem)).encode()).hexdigest()


# -- 06.3: a client the stripping proxy cannot downgrade ---------------------------------------------------


async def send_with(host, port, tls_context, mode):
    async with smtplab.Client(host=host, port=port, tls=mode, tls_context=tls_context) as client:
        await client.login("alice", "wonderland")
        await client.send("alice@example.test", "bob@example.test", CONTENT)


async def implicit_tls(host, port, tls_context):
    await send_with(host, port, tls_context, "implicit")


async def logs_in_sends_nothing(host, port, tls_context):
    async with smtplab.Client(host=host, port=port, tls="starttls", tls_context=tls_context) as client:
        await client.login("alice", "wonderland")


async def sends_without_logging_in(host, port, tls_context):
    async with smtplab.Client(host=host, port=port, tls="starttls", tls_context=tls_context) as client:
        await client.send("alice@example.test", "bob@example.test", CONTENT)


async def never_asks_for_tls(host, port, tls_context):
    await send_with(host, port, tls_context, None)


async def aiosmtplib_if_offered(host, port, tls_context):
    smtp = aiosmtplib.SMTP(hostname=host, port=port, tls_context=tls_context, timeout=5)  # start_tls=None
    await smtp.connect()
    try:
        await smtp.login("alice", "wonderland")
        await smtp.sendmail("alice@example.test", ["bob@example.test"], CONTENT)
        await smtp.quit()
    finally:
        smtp.close()


def smtplib_if_offered(host, port, tls_context):
    with smtplib.SMTP(host, port, timeout=5) as s:
        s.ehlo()
        if s.has_extn("starttls"):
            s.starttls(context=tls_context)
            s.ehlo()
        s.login("alice", "wonderland")
        s.sendmail("alice@example.test", ["bob@example.test"], CONTENT)


async def falls_back_to_plain_text(host, port, tls_context):
    try:
        await send_with(host, port, tls_context, "starttls")
    except smtplab.TLSMismatchError:
        await send_with(host, port, tls_context, None)


async def checks_no_certificate(host, port, tls_context):
    async with smtplab.Client(host=host, port=port, tls="starttls", validate_certs=False) as client:
        await client.login("alice", "wonderland")
        await client.send("alice@example.test", "bob@example.test", CONTENT)


WRONG_ANSWERS = {
    "06.1": [
        Wrong("not-settings", [("A", "implicit"), ("B", None), ("C", "starttls")], "a list of pairs"),
        Wrong("missing-server", {"A": RIGHT["A"], "B": RIGHT["B"]}, "C forgotten"),
        Wrong("other-setting", changed("C", host="127.0.0.1", validate_certs=False), "checks switched off"),
        Wrong("not-a-mode", changed("A", tls="ssl"), "tls='ssl'"),
        Wrong("not-this-machine", changed("C", host="mail.example.test"), "a name that leads elsewhere"),
        Wrong("waited-for-greeting", changed("A", tls="starttls"), "STARTTLS on the implicit server"),
        Wrong("tls-too-early", changed("B", tls="implicit"), "implicit TLS on the plain server"),
        Wrong("starttls-not-offered", changed("B", tls="starttls"), "STARTTLS on the plain server"),
        Wrong("plain-where-tls", changed("C", tls=None), "plain text on the STARTTLS server"),
        Wrong("name-mismatch", changed("C", host="127.0.0.1"), "the address the certificate does not list"),
    ],
    "06.2": [
        Wrong("not-a-pair", names_only, "the names alone"),
        Wrong("common-name", common_name_instead, "the subject's CN"),
        Wrong("missing-names", dns_names_only, "DNS names without the IP addresses"),
        Wrong("wrong-names", the_issuer_instead, "the issuer"),
        Wrong("hashed-pem", hash_of_the_pem_text, "SHA-256 of the PEM text"),
        Wrong("sha1", sha1_fingerprint, "a SHA-1 fingerprint"),
        Wrong("wrong-fingerprint", hash_of_the_names, "a hash of something else"),
    ],
    "06.3": [
        Wrong("wrong-mode", implicit_tls, "implicit TLS on a STARTTLS port"),
        Wrong("nothing-sent", logs_in_sends_nothing, "logs in, sends nothing"),
        Wrong("no-login", sends_without_logging_in, "sends without logging in"),
        Wrong("never-encrypted", never_asks_for_tls, "plain text from the start"),
        Wrong("downgraded", aiosmtplib_if_offered, "aiosmtplib's start_tls=None"),
        Wrong("downgraded", smtplib_if_offered, "smtplib upgrading only when offered"),
        Wrong("fell-back", falls_back_to_plain_text, "retries in plain text without STARTTLS"),
        Wrong("no-verification", checks_no_certificate, "validate_certs=False"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "starttls", WRONG_ANSWERS
)
