"""What a failed TLS connection means in SMTP terms, and what to change.

When client and server disagree about TLS — implicit TLS against a plain port, a certificate
signed by an authority the client does not trust, a name the certificate does not list — the
ssl module says ``WRONG_VERSION_NUMBER`` or ``CERTIFICATE_VERIFY_FAILED``. :func:`explain_ssl_error`
turns that into a sentence naming the mismatch and the fix, as a :class:`~smtplab.hints.Hint`:
every fix is an option smtplab accepts as written, spelled for Python (``tls='starttls'``) or
for the command line (``--tls starttls``).

It tells the truth about the server at hand: the names it quotes are those of the certificate
that server presented (when the client could read it), and trusting the lab CA is advised only
for a lab server.
"""

from __future__ import annotations

import re
import ssl

from smtplab.hints import Fix, Hint, option, start_lab_server, trust_lab_ca
from smtplab.tls import CertificateFacts, LabTLS, TLSMode, check_tls_mode, created_lab_tls

__all__ = ["exception_chain", "explain_ssl_error"]


_IMPLICIT = "implicit"
_STARTTLS = "starttls"
_PLAIN = None
_UNKNOWN = "unknown"  # a mode that is none of the three

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) that mean "I do not trust whoever signed this".
_UNTRUSTED_CODES = {2, 18, 19, 20, 21}
_HOSTNAME_CODES = {62, 63, 64}  # hostname, email, IP address mismatch
_TIME_CODES = {9: "is not valid yet", 10: "has expired"}


def _mode(expected_mode: object) -> TLSMode | str:
    try:
        return check_tls_mode(expected_mode)
    except ValueError:
        return _UNKNOWN


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions behind it (``__cause__``, ``__context__``, ``original``), nearest first."""
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(chain) < 20:
        item = todo.pop(0)
        if item is None or any(item is seen for seen in chain):
            continue
        chain.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "original", None)]
    return chain


def _openssl_words(ssl_errors: list[ssl.SSLError]) -> str:
    """`` ([SSL: WRONG_VERSION_NUMBER] wrong version number)``: what other tools print too."""
    for error in ssl_errors:
        words = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(error.strerror or ""))
        if words:
            return f" ({words})"
    return ""


def explain_ssl_error(
    exc: BaseException,
    *,
    host: str,
    port: int | str,
    expected_mode: object = _UNKNOWN,
    certificate: CertificateFacts | None = None,
    lab_tls: LabTLS | None = None,
    trusts_lab_ca: bool = False,
) -> Hint:
    """Explain a failed TLS connection in SMTP terms, naming the mismatch and the fix.

    Args:
        exc: The exception raised by the client (``ssl.SSLError`` and friends, or an
            exception that wraps one, or a timeout waiting for the greeting).
        host: The host the client connected to.
        port: The port the client connected to (or the path of a Unix-domain socket).
        expected_mode: The client's TLS mode (:data:`~smtplab.tls.TLSMode`): ``None`` (plain
            text), ``"starttls"`` (RFC 3207) or ``"implicit"`` (TLS from the first byte, RFC
            8314); left out (or anything else), the explanation does not rely on it.
        certificate: The certificate the server presented, if the client could read it (as
            :func:`~smtplab.tls.describe_certificate` reads it); a hostname mismatch quotes its
            names. Without it, no names are quoted.
        lab_tls: The lab CA that issued the server's certificate, when one in this process did
            (the server is a lab server, and trusting that CA is the fix).
        trusts_lab_ca: Whether the client already trusts a lab CA. If it refuses a certificate
            from a lab CA all the same, that is another lab CA of the same name — or an
            impostor's — and trusting "the lab CA" is not the fix.

    Returns:
        A short explanation (one or two sentences) with its fixes; ``str()`` of it is the
        Python spelling. Never raises.
    """
    try:
        return _explain(exc, host, port, _mode(expected_mode), certificate, lab_tls, trusts_lab_ca)
    except Exception:  # noqa: BLE001 # pragma: no cover - the contract is "never raise"
        return Hint(f"TLS with {host}:{port} failed: {exc!r}")


def _explain(
    exc: BaseException,
    host: str,
    port: int | str,
    mode: TLSMode | str,
    certificate: CertificateFacts | None,
    lab_tls: LabTLS | None,
    trusts_lab_ca: bool,
) -> Hint:
    where = port if isinstance(port, str) else f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    chain = exception_chain(exc)
    ssl_errors = [e for e in chain if isinstance(e, ssl.SSLError)]
    text = " ".join(str(e) for e in chain)
    upper = text.upper()
    reasons = {str(getattr(e, "reason", "") or "").upper() for e in ssl_errors}
    # A lab server: its CA is known here, or its certificate names a lab CA as issuer (a lab
    # server in another process, e.g. `smtplab serve`).
    lab = lab_tls is not None or (certificate is not None and certificate.lab_issued)
    default_lab = lab_tls is not None and lab_tls is created_lab_tls()

    # 1. The server spoke TLS, but the client rejected its certificate.
    # The one OpenSSL filled in (smtplab's TLSCertificateError is one too, wrapped around it).
    verifies = [e for e in chain if isinstance(e, ssl.SSLCertVerificationError)]
    verify = next((e for e in verifies if getattr(e, "verify_code", None) is not None), None)
    verify = verify or next(iter(verifies), None)
    if verify is not None or "CERTIFICATE_VERIFY_FAILED" in upper:
        code = getattr(verify, "verify_code", None)
        message = str(getattr(verify, "verify_message", "") or "")
        lower = (message or text).lower()
        if code in _HOSTNAME_CODES or "mismatch" in lower:
            # OpenSSL: "Hostname mismatch, certificate is not valid for 'example.com'."
            found = re.search(r"not valid for '([^']*)'", message or text)
            asked = found.group(1) if found else host
            names = certificate.san if certificate is not None else ()
            listed = f"is for {', '.join(names)}" if names else "does not list that name"
            use = (" (", option("host", names[0]), ")") if names else ()
            if lab:
                hosts = (*(name for name in names if name != asked), asked)
                other: tuple[str | Fix, ...] = (
                    Fix(
                        f", or issue the lab certificate for this name with LabTLS.create(hosts={hosts!r})",
                        "",
                    ),
                )
            else:
                other = (f", or ask the server's administrator for a certificate that lists {asked!r}",)
            said = f" ({message.split(',')[0].strip()})" if message else ""  # "Hostname mismatch"
            return Hint(
                f"The certificate of {where} {listed}; you connected to {asked!r}{said}. TLS checks "
                "that the certificate names the host you asked for (RFC 6125 §6): connect "
                "using one of the certificate's names",
                *use,
                *other,
                ".",
            )
        if code in _UNTRUSTED_CODES or any(
            hint in lower for hint in ("local issuer", "self-signed", "self signed")
        ):
            issuer = (
                f"issued by {certificate.issuer}; " if certificate is not None and certificate.issuer else ""
            )
            why = f"({issuer}{message or 'unknown issuer'})"
            if lab and trusts_lab_ca:
                # Names are cheap: any CA can call itself "Lab CA"; only the signature counts.
                return Hint(
                    f"Your client does not trust the authority that signed the certificate of "
                    f"{where} {why}. Your client trusts a lab CA, but not this one: it has the "
                    "same name and another key - another kernel's lab CA, or an impostor's. If "
                    "you started that server yourself, trust its CA: ",
                    trust_lab_ca(default=False),
                    "; if you did not, do not connect - and do not switch verification off.",
                )
            if lab:
                return Hint(
                    f"Your client does not trust the authority that signed the certificate of "
                    f"{where} {why}: it is a lab server, signed by the lab's own CA, which no "
                    "system trust store knows. Trust the lab CA: ",
                    trust_lab_ca(default=default_lab),
                    " - do not switch verification off. Other tools take the same CA file "
                    "(openssl s_client -CAfile, swaks --tls-ca-path).",
                )
            return Hint(
                f"Your client does not trust the authority that signed the certificate of "
                f"{where} {why}. If you trust that authority, give the client its CA "
                "certificate (a PEM file, from the server's administrator): ",
                option("cafile", "ca.pem"),
                " - do not switch verification off.",
            )
        for code_, what in _TIME_CODES.items():
            if code == code_:
                fix = (
                    "restart the lab server with a new LabTLS.create()"
                    if lab
                    else "its administrator has to renew it"
                )
                return Hint(
                    f"The certificate of {where} {what} ({message}). Check this machine's clock, or {fix}."
                )
        return Hint(f"The certificate of {where} could not be verified ({message or text}).")

    # 2. The client started TLS but the server answered in plain text.
    if (
        reasons & {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
        or "WRONG VERSION NUMBER" in upper
    ):
        said = _openssl_words(ssl_errors)
        if mode == _STARTTLS:
            return Hint(
                f"{where} answered the TLS handshake after STARTTLS with plain text{said}, so it did "
                "not really switch to TLS. Check that the server was started with a TLS "
                "context, or use ",
                option("tls", None),
                " to stay in plain text.",
            )
        return Hint(
            f"{where} answered your TLS handshake in plain text{said}: it speaks SMTP in the clear "
            "first (a plain or STARTTLS port, RFC 3207), but you connected with implicit TLS. "
            "On this port use ",
            option("tls", "starttls"),
            " if the server offers STARTTLS, or ",
            option("tls", None),
            " for plain text; or connect to the server's implicit-TLS port.",
        )

    # 3. The two ends share no protocol version or cipher.
    if reasons & {
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    }:
        return Hint(
            f"Client and {where} share no TLS version: smtplab requires TLS 1.2 or newer "
            "(RFC 8996 retired TLS 1.0 and 1.1), and so does the lab server.",
            Fix(" If you built the client's context yourself, raise its minimum_version.", ""),
        )
    if reasons & {"SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE"}:
        return Hint(
            f"Client and {where} found no cipher suite in common.",
            Fix(" If you built either side's context yourself, keep the default cipher settings.", ""),
        )
    if reasons & {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }:
        return Hint(
            f"{where} rejected the handshake because of a certificate problem on its side "
            f"({text}). A lab server never asks for a client certificate; this server may "
            "want one (client_cert=), or dislike the one you sent."
        )

    # 4. The connection was closed in the middle of the handshake.
    eof = (
        any(isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) for e in chain)
        or "UNEXPECTED_EOF" in upper
        or "EOF OCCURRED" in upper
        or (not ssl_errors and any(isinstance(e, (ConnectionResetError, EOFError)) for e in chain))
        or "SMTPSERVERDISCONNECTED" in {type(e).__name__.upper() for e in chain}
    )
    if eof:
        if mode == _IMPLICIT:
            hint: tuple[str | Fix, ...] = (
                "If this is a plain or STARTTLS port, connect with ",
                option("tls", "starttls"),
                " or ",
                option("tls", None),
            )
        else:
            hint = ("If the server expects implicit TLS, connect with ", option("tls", "implicit"))
        return Hint(
            f"{where} closed the connection in the middle of the TLS handshake. ",
            *hint,
            "; otherwise the server's TLS set-up is unusable (no certificate loaded, or a "
            "context made for the client side)",
            Fix(" - for your own aiosmtpd server, build it with default_lab_tls().server_context()", ""),
            ".",
        )

    # 5. No greeting at all: a plain client waiting on an implicit-TLS port.
    if any(isinstance(e, TimeoutError) for e in chain) and mode in (_STARTTLS, _PLAIN):
        return Hint(
            f"{where} sent no 220 greeting before the timeout. An implicit-TLS port (RFC 8314 "
            "§3.3, usually 465) waits for the TLS handshake before it says anything, while "
            "your client (",
            option("tls", mode),
            ") waits for the greeting. Use ",
            option("tls", "implicit"),
            " for this port, or connect to the plain/STARTTLS port.",
        )

    if "STARTTLS EXTENSION NOT SUPPORTED" in upper:
        return Hint(
            f"{where} does not offer STARTTLS (its EHLO reply lists no STARTTLS, RFC 3207 §4): "
            "the server was started without TLS. Start a lab server with TLS (",
            start_lab_server("starttls"),
            "), or use ",
            option("tls", None),
            ".",
        )

    return Hint(f"TLS with {where} failed: {text or type(exc).__name__}.")
