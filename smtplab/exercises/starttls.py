"""Exercises of ``06-ssl-and-starttls.ipynb``: the right TLS settings, a certificate read, a client that fails closed."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import secrets
import ssl
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from smtplab.client import Client
from smtplab.errors import (
    ClientTimeoutError,
    LabConnectionRefusedError,
    TLSCertificateError,
    TLSMismatchError,
)
from smtplab.exercises.lab import learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise
from smtplab.server import LabServer, start_server
from smtplab.tls import LabTLS, TLSMode, check_tls_mode, default_lab_tls, describe_certificate

NOTEBOOK = "06-ssl-and-starttls.ipynb"

__all__ = ["Mysteries", "start_mysteries"]


# -- 06.1: three mystery servers ---------------------------------------------------------------------

#: Each mystery server: its TLS mode, and the names on its certificate (None: the lab's usual ones).
MYSTERIES: Mapping[str, tuple[TLSMode, tuple[str, ...] | None]] = {
    "A": ("implicit", None),
    "B": (None, None),
    "C": ("starttls", ("localhost",)),
}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SETTINGS = ("tls", "host")
_numbers = itertools.count(1)
_issued: dict[tuple[str, ...], LabTLS] = {}
_issued_lock = threading.Lock()


def _lab_tls_for(names: tuple[str, ...] | None) -> LabTLS:
    """The lab CA's certificate for ``names`` (issued once per process), or the usual one."""
    lab = default_lab_tls()
    if names is None:
        return lab
    with _issued_lock:
        if names not in _issued:
            _issued[names] = lab.issue(hosts=names)
        return _issued[names]


class Mysteries(Mapping[str, tuple[str, int]]):
    """Three running lab servers, known only by letter and address: ``mysteries["A"]`` is ``(host, port)``.

    Which TLS mode each speaks, and what its certificate says, is for you to find out.
    """

    def __init__(self, servers: Mapping[str, LabServer]) -> None:
        self._servers = dict(servers)

    def __getitem__(self, letter: str) -> tuple[str, int]:
        server = self._servers[letter]
        return server.host, server.port

    def __iter__(self) -> Iterator[str]:
        return iter(self._servers)

    def __len__(self) -> int:
        return len(self._servers)

    def stop(self) -> None:
        """Stop the three servers. Safe to call twice."""
        for server in self._servers.values():
            server.stop()

    def __repr__(self) -> str:
        places = " \u00b7 ".join(f"{letter}: {host}:{port}" for letter, (host, port) in self.items())
        return f"<Mysteries {places}>"


def start_mysteries(*, name: str = "mystery") -> Mysteries:
    """Start the three mystery servers of exercise 06.1 (names ``mystery-a`` … ``mystery-c``)."""
    servers: dict[str, LabServer] = {}
    try:
        for letter, (mode, names) in MYSTERIES.items():
            options: dict[str, Any] = {"name": f"{name}-{letter.lower()}", "tls": mode}
            if mode is not None:
                options["lab_tls"] = _lab_tls_for(names)
            servers[letter] = start_server(**options)
    except BaseException:
        Mysteries(servers).stop()
        raise
    return Mysteries(servers)


def _settings_of(settings: Any) -> dict[str, dict[str, Any]]:
    """The learner's settings per letter, checked; raises NotYet naming what is wrong with them."""
    if not isinstance(settings, Mapping):
        raise NotYet(
            "not-settings",
            f"you passed {type(settings).__name__} {str(settings)[:60]!r}, not a dict by letter.",
        )
    missing = [letter for letter in MYSTERIES if letter not in settings]
    if missing:
        raise NotYet("missing-server", f"there are no settings for {', '.join(missing)}.")
    checked: dict[str, dict[str, Any]] = {}
    for letter in MYSTERIES:
        one = settings[letter]
        if not isinstance(one, Mapping) or "tls" not in one:
            raise NotYet(
                "not-settings", f"the settings of {letter} are {one!r}: a dict with 'tls' in it was expected."
            )
        unknown = sorted(set(one) - set(_SETTINGS))
        if unknown:
            raise NotYet("other-setting", f"the settings of {letter} also set {', '.join(unknown)}.")
        try:
            tls = check_tls_mode(one["tls"])
        except ValueError as error:
            raise NotYet("not-a-mode", f"{letter}: {error}") from None
        host = one.get("host", "127.0.0.1")
        if host not in _LOOPBACK_NAMES:
            raise NotYet("not-this-machine", f"{letter}: host={host!r} is not a name of this machine.")
        checked[letter] = {"tls": tls, "host": host}
    return checked


async def _connect(letter: str, address: tuple[str, int], tls: TLSMode, host: str) -> str:
    """Connect as the learner's settings say; the TLS facts on success."""
    client = Client(
        host=host, port=address[1], tls=tls, tls_context=default_lab_tls().client_context(), timeout=2.0
    )
    try:
        await client.connect()
        await client.ehlo()
        encrypted = client.tls_active
        offered = "starttls" in client.extensions
        await client.quit()
    finally:
        await client.close()
    if not encrypted and offered:
        raise NotYet(
            "plain-where-tls",
            f"{letter}: you connected in plain text, though {letter}'s EHLO reply offers STARTTLS.",
            evidence=client.transcript.text().splitlines(),
        )
    return "plain text" if not encrypted else f"TLS ({tls})"


_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (ClientTimeoutError, "waited-for-greeting"),
    (TLSCertificateError, "name-mismatch"),
    (LabConnectionRefusedError, "not-this-machine"),
)


@exercise(
    "06.1",
    notebook=NOTEBOOK,
    title="Three mystery servers",
    hints={
        "not-settings": (
            'Give a dict with one entry per letter, each a dict of settings, e.g. {"A": {"tls": ..., '
            '"host": ...}, "B": ..., "C": ...}.'
        ),
        "missing-server": "Every mystery server needs its settings: A, B and C.",
        "other-setting": (
            "Only two settings differ from server to server: tls and host. The check brings the port "
            "and trusts the lab CA itself — and switching certificate checks off is never the fix."
        ),
        "not-a-mode": "tls is one of three: None (plain text), 'starttls' or 'implicit'.",
        "not-this-machine": (
            "The mystery servers run on this machine, on 127.0.0.1: connect with a name that leads "
            "there (localhost resolves to 127.0.0.1 here)."
        ),
        "waited-for-greeting": (
            "Your client waited for a greeting that never came: this server says nothing until a TLS "
            "handshake has happened. What kind of server stays silent like that?"
        ),
        "tls-too-early": (
            "Your client began with a TLS handshake, and the server answered in plain SMTP (OpenSSL calls "
            "that a wrong version number). This server talks in the clear first."
        ),
        "starttls-not-offered": (
            "Your client asked for STARTTLS, and this server does not offer it in its EHLO reply. "
            "Read its EHLO reply: what is left when TLS is not on offer at all?"
        ),
        "plain-where-tls": (
            "You got in, but in plain text — and this server offers STARTTLS. Take the encryption it "
            "offers: it costs one command."
        ),
        "name-mismatch": (
            "The certificate is trusted but names another host than the one you connected to. Read "
            "the names the error quotes, and connect with one that leads to this machine."
        ),
    },
)
def mystery_servers(settings: Any) -> str:
    """``settings`` — ``{"A": {"tls": ..., "host": ...}, "B": ..., "C": ...}`` — connects to all three."""
    from smtplab import aio

    checked = _settings_of(settings)
    mysteries = start_mysteries(name=f"exercise-mystery-{next(_numbers)}")
    found = []
    try:
        for letter, one in checked.items():
            try:
                how = aio.run(_connect(letter, mysteries[letter], one["tls"], one["host"]))
            except NotYet:
                raise
            except TLSMismatchError as error:
                mistake = (
                    "starttls-not-offered" if "does not offer STARTTLS" in str(error) else "tls-too-early"
                )
                raise NotYet(mistake, f"{letter}: {error}") from None
            except Exception as error:  # noqa: BLE001 - the learner's settings decide which
                mistake = next((key for kind, key in _FAILURES if isinstance(error, kind)), "raised")
                raise NotYet(mistake, f"{letter}: {type(error).__name__}: {error}") from None
            found.append(f"{letter}: {how} as {one['host']}")
    finally:
        mysteries.stop()
    return (
        f"all three answered — {'; '.join(found)}. Each mistake along the way had its own error: "
        "silence, a wrong version number, a missing STARTTLS, a name the certificate does not list."
    )


# -- 06.2: a certificate's names and fingerprint --------------------------------------------------------


def _certificates() -> list[tuple[str, Any]]:
    """Two fresh certificates from the lab CA (PEM text and facts), names unknown in advance."""
    lab = default_lab_tls()
    made = []
    for names in (
        (f"mx{secrets.randbelow(90) + 10}.example.test", "127.0.0.1"),
        (f"smtp-{secrets.token_hex(2)}.example.test", f"mail-{secrets.token_hex(2)}.example.test", "::1"),
    ):
        issued = lab.ca.issue_cert(
            *names,
            common_name="legacy-name.example.test",
            organization_name="smtplab",
            organization_unit_name="Lab server",
        )
        pem = issued.cert_chain_pems[0].bytes().decode("ascii")
        made.append((pem, describe_certificate(pem)))
    return made


def _normalised(fingerprint: Any) -> str:
    text = fingerprint.hex() if isinstance(fingerprint, (bytes, bytearray)) else str(fingerprint)
    return "".join(ch for ch in text.lower() if ch in "0123456789abcdef")


@exercise(
    "06.2",
    notebook=NOTEBOOK,
    title="Read a certificate's names and fingerprint",
    hints={
        "not-a-pair": "Return a pair: first the names, then the fingerprint.",
        "common-name": (
            "That is the subject's common name (CN). A client ignores it when the certificate has a "
            "subjectAltName extension (RFC 6125 §6.4.4): the names that count are in that extension."
        ),
        "missing-names": (
            "Some names are missing. The subjectAltName extension holds DNS names and IP addresses as "
            "two kinds of entry: a client compares with both."
        ),
        "wrong-names": "Those are not the certificate's names: look in its subjectAltName extension.",
        "hashed-pem": (
            "You hashed the PEM text. A fingerprint is the hash of the certificate itself: the DER bytes "
            "that PEM's base64 armour wraps. The ssl module converts one into the other."
        ),
        "sha1": (
            "That is a SHA-1 fingerprint — what `openssl x509 -fingerprint` prints unless told -sha256. "
            "The exercise asks for SHA-256."
        ),
        "wrong-fingerprint": (
            "That fingerprint matches nothing about this certificate. Hash the certificate's DER bytes "
            "with SHA-256 (colons and case do not matter)."
        ),
    },
)
def read_certificate(answer: Any) -> str:
    """``answer(pem)`` returns ``(names, fingerprint)``: the subjectAltName entries and the SHA-256 of the DER."""
    read = learner_function(answer, "pem")
    certificates = _certificates()
    trial = run_in_lab(lambda server: [read(pem) for pem, _ in certificates])
    for (pem, facts), result in zip(certificates, trial.result, strict=True):
        evidence = [f"the certificate's {line}" for line in str(facts).splitlines()]
        pair = isinstance(result, (tuple, list)) and len(result) == 2
        if not pair or not isinstance(result[0], (list, tuple, set, frozenset)):
            raise NotYet("not-a-pair", f"your function returned {str(result)[:80]!r}.", evidence=evidence)
        names, fingerprint = result
        given = {str(name) for name in names}
        wanted = set(facts.san)
        if given != wanted:
            if any("legacy-name" in name for name in given):
                raise NotYet("common-name", f"your names: {sorted(given)}.", evidence=evidence)
            if given < wanted:
                missing = ", ".join(sorted(wanted - given))
                raise NotYet("missing-names", f"your names leave out {missing}.", evidence=evidence)
            raise NotYet("wrong-names", f"your names: {sorted(given)}.", evidence=evidence)
        got = _normalised(fingerprint)
        der = ssl.PEM_cert_to_DER_cert(pem)
        if got != hashlib.sha256(der).hexdigest():
            if got == hashlib.sha256(pem.encode()).hexdigest():
                mistake = "hashed-pem"
            elif got == hashlib.sha1(der).hexdigest():
                mistake = "sha1"
            else:
                mistake = "wrong-fingerprint"
            raise NotYet(mistake, f"your fingerprint: {str(fingerprint)[:100]}.", evidence=evidence)
    return (
        f"right for both certificates, e.g. {', '.join(certificates[0][1].san)} with SHA-256 "
        f"{certificates[0][1].sha256[:23]}… — the same fingerprint openssl x509 -fingerprint -sha256 prints."
    )


# -- 06.3: a client the stripping proxy cannot downgrade -----------------------------------------------

#: The check's server: STARTTLS, and AUTH taken in plain text too (a badly configured server: the
#: client's defence is what is being checked). PLAIN and LOGIN only, as most submission servers.
_SERVER = {
    "tls": "starttls",
    "auth": {"alice": "wonderland"},
    "auth_require_tls": False,
    "auth_mechanisms": ("PLAIN", "LOGIN"),
}
_impostor: LabTLS | None = None


def _impostor_tls() -> LabTLS:
    """A certificate for the lab's own names from another CA: what a man in the middle would show."""
    global _impostor
    with _issued_lock:
        if _impostor is None:
            _impostor = LabTLS.create()
        return _impostor


def _gave_away(transcripts: list[Any]) -> list[str]:
    """Lines a client sent outside TLS that carry a secret or a message."""
    return [
        line.masked
        for transcript in transcripts
        for line in transcript
        if line.sender == "client"
        and not line.tls
        and (line.secret_from is not None or line.text[:10].upper() in ("MAIL FROM:", "DATA"))
    ]


@exercise(
    "06.3",
    notebook=NOTEBOOK,
    title="A client the stripping proxy cannot downgrade",
    hints={
        "wrong-mode": (
            "Your client could not even reach the honest server: it speaks STARTTLS on this port, "
            "plain SMTP first, TLS on request."
        ),
        "nothing-sent": "Your function returned without the server receiving a message: send one.",
        "no-login": "The message arrived, but nobody logged in: log in as alice before sending.",
        "never-encrypted": (
            "Even without an attacker your client logged in in plain text. Use the TLS the server "
            "offers, before AUTH."
        ),
        "downgraded": (
            "Through the stripping proxy your client carried on in plain text: it upgrades only when "
            "STARTTLS is offered, and the proxy deleted the offer. Make TLS a requirement, not a wish."
        ),
        "fell-back": (
            "Your client noticed that STARTTLS was missing — and then tried again in plain text. That "
            "second try is exactly what the attacker wants: when TLS is missing, stop."
        ),
        "no-verification": (
            "Your client also accepted an impostor: a server showing a certificate from another CA. "
            "Encryption without checking who is at the other end protects nothing. Keep the "
            "tls_context you are given: it trusts only the lab CA."
        ),
    },
)
def cannot_be_downgraded(send_securely: Any) -> str:
    """``send_securely(host, port, tls_context)`` logs in as alice and sends, but never in plain text."""
    learner = learner_function(send_securely, "host", "port", "tls_context")
    lab_context = default_lab_tls().client_context()

    # 1. An honest server: it must work, inside TLS.
    honest = run_in_lab(
        lambda server: learner(server.host, server.port, lab_context), options=_SERVER, allow_errors=True
    )
    if isinstance(honest.error, TLSMismatchError):
        raise NotYet("wrong-mode", f"your code raised TLSMismatchError: {honest.error}")
    honest.raise_for_trouble()
    if not honest.messages:
        raise NotYet("nothing-sent", "the honest server received no message.")
    message = honest.messages[0]
    if message.tls is None:
        raise NotYet(
            "never-encrypted",
            "the honest server received your message in plain text.",
            evidence=[line for t in honest.transcripts for line in t.text(annotate=False).splitlines()],
        )
    if message.auth_user != "alice":
        raise NotYet("no-login", f"the message arrived with no login (AUTH user: {message.auth_user!r}).")

    # 2. The same server behind a STARTTLS-stripping proxy: nothing may leave in the clear.
    from smtplab.proxy import start_proxy

    number = next(_numbers)
    proxies: list[Any] = []

    def through_proxy(server: LabServer) -> Any:
        return learner(proxies[0].host, proxies[0].port, lab_context)

    stripped = run_in_lab(
        through_proxy,
        options=_SERVER,
        before=lambda server: proxies.append(
            start_proxy(server, strip_starttls=True, name=f"exercise-stripper-{number}")
        ),
        allow_errors=True,
    )
    try:
        connections = proxies[0].connections if proxies else []
        if connections:  # let the proxy finish its records of connections still closing
            with contextlib.suppress(TimeoutError):
                proxies[0].wait_for(len(connections), timeout=2.0)
    finally:
        for proxy in proxies:
            proxy.stop()
    if stripped.timed_out or stripped.still_running:
        stripped.raise_for_trouble()
    leaked = _gave_away([c.transcript for c in connections])
    if leaked or stripped.messages:
        evidence = [line for c in connections for line in c.transcript.text(annotate=False).splitlines()]
        mistake = "fell-back" if len(connections) > 1 else "downgraded"
        raise NotYet(
            mistake,
            f"through the proxy, in plain text, your client sent: {'; '.join(leaked) or 'a message'}.",
            evidence=evidence,
        )
    stopped = f"{type(stripped.error).__name__}" if stripped.error is not None else "returning"

    # 3. An impostor in the server's place, with a certificate from another CA.
    impostor = run_in_lab(
        lambda server: learner(server.host, server.port, lab_context),
        options={**_SERVER, "lab_tls": _impostor_tls()},
        allow_errors=True,
    )
    if impostor.timed_out or impostor.still_running:
        impostor.raise_for_trouble()
    logged_in = [
        line
        for t in impostor.transcripts
        for line in t
        if line.sender == "client" and line.secret_from is not None
    ]
    if impostor.messages or logged_in:
        raise NotYet(
            "no-verification",
            "the impostor got your client's "
            + (
                "password and message"
                if impostor.messages and logged_in
                else "password"
                if logged_in
                else "message"
            )
            + ".",
        )
    return (
        "to the honest server: logged in and delivered inside TLS; through the stripping proxy: stopped "
        f"({stopped}) before sending anything; to the impostor: refused its certificate. That is what "
        "failing closed looks like."
    )
