"""What a failed TLS connection means in SMTP terms, and what to change.

When client and server disagree about TLS — implicit TLS against a plain port, a certificate
signed by an authority the client does not trust, a name the certificate does not list — the
ssl module says ``WRONG_VERSION_NUMBER`` or ``CERTIFICATE_VERIFY_FAILED``. :func:`explain_ssl_error`
turns that into a sentence naming the mismatch and the fix; every fix it suggests is an option
smtplab accepts as written (``tls='starttls'``, ``tls=None``, ``tls_context=...``).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable

from smtplab.tls import TLSMode, check_tls_mode, created_lab_tls

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
    """``exc`` and the exceptions behind it (``__cause__``, ``__context__``), nearest first."""
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(chain) < 20:
        item = todo.pop(0)
        if item is None or any(item is seen for seen in chain):
            continue
        chain.append(item)
        todo += [item.__cause__, item.__context__]
    return chain


def explain_ssl_error(
    exc: BaseException,
    *,
    host: str,
    port: int,
    expected_mode: object = _UNKNOWN,
    cert_names: Iterable[str] | None = None,
) -> str:
    """Explain a failed TLS connection in SMTP terms, naming the mismatch and the fix.

    Args:
        exc: The exception raised by the client (``ssl.SSLError`` and friends, or an
            exception that wraps one, or a timeout waiting for the greeting).
        host: The host the client connected to.
        port: The port the client connected to.
        expected_mode: The client's TLS mode (:data:`~smtplab.tls.TLSMode`): ``None`` (plain
            text), ``"starttls"`` (RFC 3207) or ``"implicit"`` (TLS from the first byte, RFC
            8314); left out (or anything else), the explanation does not rely on it.
        cert_names: The names in the server certificate, if known; by default the hosts of
            :func:`default_lab_tls` when it has been created.

    Returns:
        A short explanation (one or two sentences). Never raises.
    """
    try:
        return _explain(exc, host, port, _mode(expected_mode), cert_names)
    except Exception:  # noqa: BLE001 # pragma: no cover - the contract is "never raise"
        return f"TLS with {host}:{port} failed: {exc!r}"


def _explain(
    exc: BaseException,
    host: str,
    port: int,
    mode: TLSMode | str,
    cert_names: Iterable[str] | None,
) -> str:
    where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    chain = exception_chain(exc)
    ssl_errors = [e for e in chain if isinstance(e, ssl.SSLError)]
    text = " ".join(str(e) for e in chain)
    upper = text.upper()
    reasons = {str(getattr(e, "reason", "") or "").upper() for e in ssl_errors}

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
            lab = created_lab_tls()
            names = tuple(cert_names) if cert_names is not None else (lab.hosts if lab is not None else ())
            listed = f"is for {', '.join(names)}" if names else "does not list that name"
            hosts = (*(name for name in names if name != asked), asked)
            return (
                f"The certificate of {where} {listed}; you connected to {asked!r}. TLS checks "
                "that the certificate names the host you asked for (RFC 6125 §6): connect "
                "using one of the certificate's names, or issue the lab certificate for this "
                f"name with LabTLS.create(hosts={hosts!r})."
            )
        if code in _UNTRUSTED_CODES or any(
            hint in lower for hint in ("local issuer", "self-signed", "self signed")
        ):
            return (
                f"Your client does not trust the authority that signed the certificate of "
                f"{where} ({message or 'unknown issuer'}): the lab server uses the lab's own "
                "CA, which no system trust store knows. Trust the lab CA: pass "
                "tls_context=default_lab_tls().client_context() or "
                "cafile=default_lab_tls().write_files().ca_cert (openssl s_client -CAfile, "
                "swaks --tls-ca-path) - do not switch verification off."
            )
        for code_, what in _TIME_CODES.items():
            if code == code_:
                return (
                    f"The certificate of {where} {what} ({message}). Check this machine's clock, "
                    "or restart the lab server with a new LabTLS.create()."
                )
        return (
            f"The certificate of {where} could not be verified ({message or text}). Make the "
            "client trust the lab CA (tls_context=default_lab_tls().client_context())."
        )

    # 2. The client started TLS but the server answered in plain text.
    if (
        reasons & {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
        or "WRONG VERSION NUMBER" in upper
    ):
        if mode == _STARTTLS:
            return (
                f"{where} answered the TLS handshake after STARTTLS with plain text, so it did "
                "not really switch to TLS. Check that the server was started with a TLS "
                "context, or use tls=None to stay in plain text."
            )
        return (
            f"{where} answered your TLS handshake in plain text: it speaks SMTP in the clear "
            "first (a plain or STARTTLS port, RFC 3207), but you connected with implicit TLS. "
            "On this port use tls='starttls' if the server offers STARTTLS, or tls=None for "
            "plain text; or connect to the server's implicit-TLS port."
        )

    # 3. The two ends share no protocol version or cipher.
    if reasons & {
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    }:
        return (
            f"Client and {where} share no TLS version: the lab requires TLS 1.2 or newer "
            "(RFC 8996 retired TLS 1.0 and 1.1). Raise the client's minimum_version or use "
            "default_lab_tls().client_context()."
        )
    if reasons & {"SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE"}:
        return (
            f"Client and {where} found no cipher suite in common. Use the default cipher "
            "settings (default_lab_tls().client_context()) on both sides."
        )
    if reasons & {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }:
        return (
            f"{where} rejected the handshake because of a certificate problem on its side "
            f"({text}). The lab server does not ask for client certificates; check the server's "
            "TLS context."
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
        hint = (
            "If this is a plain or STARTTLS port, connect with tls='starttls' or tls=None; "
            if mode == _IMPLICIT
            else "If the server expects implicit TLS, connect with tls='implicit'; "
        )
        return (
            f"{where} closed the connection in the middle of the TLS handshake. {hint}"
            "otherwise the server's TLS context is unusable (no certificate loaded, or made "
            "for the client side) - build it with default_lab_tls().server_context()."
        )

    # 5. No greeting at all: a plain client waiting on an implicit-TLS port.
    if any(isinstance(e, TimeoutError) for e in chain) and mode in (_STARTTLS, _PLAIN):
        return (
            f"{where} sent no 220 greeting before the timeout. An implicit-TLS port (RFC 8314 "
            "§3.3, usually 465) waits for the TLS handshake before it says anything, while "
            f"your client (tls={mode!r}) waits for the greeting. Use tls='implicit' for this "
            "port, or connect to the plain/STARTTLS port."
        )

    if "STARTTLS EXTENSION NOT SUPPORTED" in upper:
        return (
            f"{where} does not offer STARTTLS (its EHLO reply lists no STARTTLS, RFC 3207 §4): "
            "the server was started without a TLS context. Start it with TLS, or use "
            "tls=None."
        )

    return f"TLS with {where} failed: {text or type(exc).__name__}."
