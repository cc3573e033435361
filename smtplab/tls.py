"""The lab's own certificate authority, TLS contexts for both ends, and readable TLS facts.

A real mail server proves its identity with a certificate signed by an authority the client
trusts. The lab does the same with a private certificate authority created at run time with
`trustme <https://trustme.readthedocs.io>`_: no key or certificate is ever stored in the
project, and nothing outside this Python process trusts the lab CA unless you hand it the CA
file yourself (:meth:`LabTLS.write_files`).

Example:
    >>> from smtplab.tls import default_lab_tls
    >>> lab = default_lab_tls()  # created on first use, then reused
    >>> server_ctx = lab.server_context()  # give this to the lab server
    >>> client_ctx = lab.client_context()  # give this to the client

SMTP meets TLS in two ways: *implicit TLS*, where the handshake starts as soon as the TCP
connection opens (RFC 8314 §3, "submissions", port 465), and *STARTTLS*, where the client asks
for TLS in the middle of a plain SMTP conversation (RFC 3207). smtplab names them with one
vocabulary, :data:`TLSMode` — ``None`` (plain text), ``"starttls"`` or ``"implicit"`` — which
``start_server(tls=...)``, ``Client(tls=...)``, the command line and every error message share,
checked in one place (:func:`check_tls_mode`).

This module also reads the facts of a TLS session (:func:`summarize`, :class:`TLSSummary`) and
of one certificate (:func:`describe_certificate`, :class:`CertificateFacts`, the one reader of
a certificate on its own); they stay beside the CA because the server side of a session can only
name its own certificate through the contexts this module built. What an SSL error means is :mod:`smtplab.diagnose`.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import functools
import os
import ssl
import stat
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    import trustme

__all__ = [
    "DEFAULT_HOSTS",
    "LAB_ISSUER",
    "TLS_MODES",
    "CertificateFacts",
    "LabTLS",
    "TLSFiles",
    "TLSMode",
    "TLSSummary",
    "check_tls_mode",
    "created_lab_tls",
    "default_lab_tls",
    "describe_certificate",
    "summarize",
    "trusts_a_lab_ca",
]

TLSMode = Literal["starttls", "implicit"] | None
"""How a connection meets TLS: ``None`` (plain text), ``"starttls"`` (RFC 3207) or ``"implicit"``."""

TLS_MODES: tuple[TLSMode, ...] = (None, "starttls", "implicit")

# What people write for a mode, and the mode they mean: named in the error, never accepted.
_MODE_GUESSES: dict[object, TLSMode] = {
    "none": None,
    "plain": None,
    "off": None,
    "no": None,
    "false": None,
    "": None,
    "tls": "implicit",
    "ssl": "implicit",
    "smtps": "implicit",
    "submissions": "implicit",
    "start_tls": "starttls",
    "start-tls": "starttls",
}


def check_tls_mode(value: object, *, option: str = "tls") -> TLSMode:
    """Return ``value`` if it is a TLS mode, else raise a ``ValueError`` saying which it may be.

    The one check of the one vocabulary: ``None`` (plain text), ``"starttls"`` (STARTTLS,
    RFC 3207) or ``"implicit"`` (TLS from the first byte, RFC 8314 §3).

    Args:
        value: What was passed.
        option: The option's name, for the message.

    Raises:
        ValueError: Anything else; a near miss (``"none"``, ``"ssl"``, ``True``) is named with
            the mode it probably means, written as it should be passed.
    """
    if value is None or (isinstance(value, str) and value in ("starttls", "implicit")):
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        guess: object = "implicit" if value else None
    elif isinstance(value, str) and value.strip().lower() in ("starttls", "implicit"):
        guess = value.strip().lower()
    elif isinstance(value, str) and value.strip().lower() in _MODE_GUESSES:
        guess = _MODE_GUESSES[value.strip().lower()]
    else:
        guess = _MISSING
    hint = f" Did you mean {option}={guess!r}?" if guess is not _MISSING else ""
    raise ValueError(
        f"{option} must be None (plain text), 'starttls' (STARTTLS, RFC 3207) or 'implicit' "
        f"(TLS from the first byte, RFC 8314), not {value!r}.{hint}"
    )


_MISSING = object()

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
"""Names the lab server certificate is issued for: every way to say "this machine"."""

#: The organisation and unit of every lab CA (:meth:`LabTLS.create`): how a lab certificate is
#: recognised, even one from a lab server in another process (``smtplab serve``).
_LAB_ORGANIZATION, _LAB_CA_UNIT = "smtplab", "Lab CA"
LAB_ISSUER = f"O={_LAB_ORGANIZATION}, OU={_LAB_CA_UNIT}"
"""The issuer of every lab server certificate, as :attr:`CertificateFacts.issuer` writes it."""

# Server contexts built by LabTLS -> DER of the certificate they present. A TLS server never
# sees its own certificate through the ssl module (``getpeercert()`` describes the *peer*, and
# the client sends none), so summarize() looks the certificate up here by context.
_SERVER_CERTS: weakref.WeakKeyDictionary[ssl.SSLContext, bytes] = weakref.WeakKeyDictionary()
# Server-side SSL objects -> the name the client asked for with SNI (RFC 6066 §3), recorded by
# the server context's sni_callback. Python clients send no SNI for IP addresses.
_SNI_NAMES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a :class:`LabTLS`, for programs that cannot take a Python SSL context.

    Attributes:
        ca_cert: The lab CA certificate. Trust it with ``openssl s_client -CAfile``,
            ``swaks --tls-ca-path``, ``curl --cacert`` or
            ``ssl.create_default_context(cafile=...)``.
        server_cert: The server certificate followed by its chain (PEM).
        server_key: The server's private key (PEM, unencrypted, mode 0600).
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path

    @property
    def directory(self) -> Path:
        """The directory holding the three files."""
        return self.ca_cert.parent


class LabTLS:
    """A private certificate authority and one server certificate issued by it.

    Build one with :meth:`create` (or share the process-wide one from :func:`default_lab_tls`).
    The SSL contexts are built on first use and then cached, because building a context costs
    tens of milliseconds; treat them as read-only, since every user of this object shares them.

    Attributes:
        ca: The ``trustme.CA`` that signs the lab certificates.
        server_cert: The ``trustme.LeafCert`` the lab server presents.
        hosts: The names and addresses the server certificate is valid for.
    """

    def __init__(
        self,
        ca: trustme.CA,
        server_cert: trustme.LeafCert,
        *,
        hosts: Iterable[str],
    ) -> None:
        """Wrap an existing CA and server certificate; most code wants :meth:`create`.

        Args:
            ca: The certificate authority.
            server_cert: A certificate issued by ``ca`` for ``hosts``.
            hosts: The names in ``server_cert``'s subjectAltName.
        """
        self.ca = ca
        self.server_cert = server_cert
        self.hosts: tuple[str, ...] = tuple(hosts)
        self._lock = threading.Lock()
        self._server_context: ssl.SSLContext | None = None
        self._client_context: ssl.SSLContext | None = None
        self._default_files: TLSFiles | None = None

    @classmethod
    def create(
        cls,
        *,
        hosts: Iterable[str] | str = DEFAULT_HOSTS,
        valid_days: int = 90,
    ) -> LabTLS:
        """Create a fresh lab CA and issue a server certificate for ``hosts``.

        Args:
            hosts: DNS names and IP addresses the server certificate covers; a client checks
                the name it connected to against this list (RFC 6125 §6). A single string is
                taken as one host.
            valid_days: How long the server certificate is valid, starting one hour ago (to
                forgive small clock differences).

        Returns:
            A new :class:`LabTLS`.

        Raises:
            ValueError: ``hosts`` is empty or holds an empty name, or ``valid_days`` < 1.
        """
        names = _check_hosts(hosts, valid_days)
        import trustme  # imported here: nothing cryptographic happens at import time

        ca = trustme.CA(organization_name=_LAB_ORGANIZATION, organization_unit_name=_LAB_CA_UNIT)
        return cls(ca, _issue(ca, names, valid_days), hosts=names)

    def issue(self, *, hosts: Iterable[str] | str, valid_days: int = 90) -> LabTLS:
        """Another server certificate from this lab CA, for ``hosts``: a :class:`LabTLS` sharing the CA.

        A client that trusts this lab CA trusts both certificates, so the only difference it can
        see is the names: a lab server started with ``lab_tls=lab.issue(hosts="mail.example.test")``
        shows what a client makes of a trusted certificate issued for another name.

        Args:
            hosts: The names and addresses the new certificate covers (a string is one host).
            valid_days: How long it is valid, starting one hour ago.

        Raises:
            ValueError: As for :meth:`create`.
        """
        names = _check_hosts(hosts, valid_days)
        return type(self)(self.ca, _issue(self.ca, names, valid_days), hosts=names)

    @property
    def server_certificate(self) -> CertificateFacts:
        """What the server certificate says: names, issuer, validity, key, fingerprint."""
        return describe_certificate(self.server_cert.cert_chain_pems[0].bytes())

    @property
    def ca_certificate(self) -> CertificateFacts:
        """What the lab CA's own certificate says (it signed :attr:`server_certificate`)."""
        return describe_certificate(self.ca.cert_pem.bytes())

    def __repr__(self) -> str:
        return f"<LabTLS for {', '.join(self.hosts)}>"

    @property
    def ca_pem(self) -> str:
        """The lab CA certificate in PEM form (public; safe to show)."""
        return self.ca.cert_pem.bytes().decode("ascii")

    @property
    def server_der(self) -> bytes:
        """The server certificate in DER form: what the lab server presents in every handshake."""
        return _pem_to_der(self.server_cert.cert_chain_pems[0].bytes())

    def issued(self, certificate: bytes | str) -> bool:
        """Whether this lab's CA signed ``certificate`` (PEM text or DER bytes). Never raises."""
        try:
            from cryptography import x509

            der = _to_der(certificate)
            ca = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
            x509.load_der_x509_certificate(der or b"").verify_directly_issued_by(ca)
        except Exception:  # noqa: BLE001 - unreadable, or signed by someone else
            return False
        return True

    def server_context(self) -> ssl.SSLContext:
        """The server side's SSL context, built once and cached.

        TLS 1.2 or newer, the lab certificate loaded, no client certificate requested
        (``CERT_NONE``, ``check_hostname`` off: aiosmtpd warns about anything else).

        Returns:
            The shared ``ssl.SSLContext`` for ``PROTOCOL_TLS_SERVER``.
        """
        with self._lock:
            if self._server_context is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self.server_cert.configure_cert(ctx)
                ctx.sni_callback = _record_sni
                with _REGISTRY_LOCK:
                    _SERVER_CERTS[ctx] = self.server_der
                self._server_context = ctx
            return self._server_context

    def client_context(self) -> ssl.SSLContext:
        """The client side's SSL context, built once and cached.

        It trusts the lab CA and nothing else, requires TLS 1.2 or newer, and checks that the
        certificate names the host you connect to (``check_hostname``, RFC 6125).

        Returns:
            The shared ``ssl.SSLContext`` for ``PROTOCOL_TLS_CLIENT``.
        """
        with self._lock:
            if self._client_context is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                self.ca.configure_trust(ctx)
                self._client_context = ctx
            return self._client_context

    def write_files(self, directory: str | os.PathLike[str] | None = None) -> TLSFiles:
        """Write the CA certificate, server certificate and server key as PEM files.

        Args:
            directory: Where to write ``ca.pem``, ``server.pem`` and ``server.key`` (created if
                missing). By default, a private temporary directory (mode 0700) that is removed
                when the interpreter exits; repeated calls reuse it.

        Returns:
            The paths, as a :class:`TLSFiles`.
        """
        with self._lock:
            if directory is None:
                files = self._default_files
                if files is None or not files.directory.is_dir():
                    import shutil  # only writing files needs these two
                    import tempfile

                    target = Path(tempfile.mkdtemp(prefix="smtplab-tls-"))  # mode 0700
                    atexit.register(shutil.rmtree, target, ignore_errors=True)
                else:
                    target = files.directory
            else:
                target = Path(directory)
                target.mkdir(parents=True, exist_ok=True)
            files = TLSFiles(
                ca_cert=target / "ca.pem",
                server_cert=target / "server.pem",
                server_key=target / "server.key",
            )
            self.ca.cert_pem.write_to_path(files.ca_cert)
            files.server_cert.write_bytes(b"".join(blob.bytes() for blob in self.server_cert.cert_chain_pems))
            # Create the key file 0600 before the key is in it.
            fd = os.open(files.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                os.chmod(files.server_key, stat.S_IRUSR | stat.S_IWUSR)
                fh.write(self.server_cert.private_key_pem.bytes())
            if directory is None:
                self._default_files = files
            return files


def _check_hosts(hosts: Iterable[str] | str, valid_days: int) -> tuple[str, ...]:
    if isinstance(hosts, str):
        hosts = (hosts,)
    names = tuple(hosts)
    if not names or not all(isinstance(h, str) and h.strip() for h in names):
        raise ValueError(f"hosts must be non-empty names or addresses, got {names!r}")
    if valid_days < 1:
        raise ValueError(f"valid_days must be at least 1, got {valid_days!r}")
    return names


def _issue(ca: trustme.CA, names: tuple[str, ...], valid_days: int) -> trustme.LeafCert:
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return ca.issue_cert(
        *names,
        organization_name=_LAB_ORGANIZATION,
        organization_unit_name="Lab server",
        not_before=now - _dt.timedelta(hours=1),
        not_after=now + _dt.timedelta(days=valid_days),
    )


_default: LabTLS | None = None
_default_lock = threading.Lock()


def trusts_a_lab_ca(context: ssl.SSLContext) -> bool:
    """Whether ``context`` trusts a lab CA — any: they all share one name. Never raises."""
    lab = {("organizationName", _LAB_ORGANIZATION), ("organizationalUnitName", _LAB_CA_UNIT)}
    try:
        trusted = context.get_ca_certs()
    except (ssl.SSLError, ValueError):  # pragma: no cover - a context that cannot say
        return False
    return any({pair for rdn in ca.get("subject", ()) for pair in rdn} == lab for ca in trusted)


def created_lab_tls() -> LabTLS | None:
    """The process-wide :class:`LabTLS` if :func:`default_lab_tls` has made it, else ``None``."""
    return _default


def default_lab_tls() -> LabTLS:
    """The process-wide :class:`LabTLS`, created on first call (thread-safe) and then reused.

    Returns:
        The same :class:`LabTLS` for every caller in this process.
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = LabTLS.create()
    return _default


def _record_sni(ssl_object: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
    # Never fail a handshake because of bookkeeping: any exception here becomes a TLS alert.
    try:
        if server_name:
            with _REGISTRY_LOCK:
                _SNI_NAMES[ssl_object] = server_name
    except Exception:  # noqa: BLE001 # pragma: no cover - defensive
        pass


def _pem_to_der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))


# --------------------------------------------------------------------------- summaries

_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


@dataclass(frozen=True)
class TLSSummary:
    """What a TLS session looks like, in terms a learner can check.

    Every field is ``None`` (``san``: empty) when the ssl module could not tell.

    Attributes:
        version: Protocol version, e.g. ``"TLSv1.3"``.
        cipher: Cipher suite, e.g. ``"TLS_AES_256_GCM_SHA384"``.
        bits: Secret key bits of the cipher.
        subject: Distinguished name of the server certificate.
        issuer: Distinguished name of the authority that signed it.
        not_before: Start of the certificate's validity (UTC).
        not_after: End of the certificate's validity (UTC).
        san: Names and addresses in the certificate's subjectAltName.
        peer_hostname: On the client side the name the client checked the certificate
            against; on the server side the name the client asked for with SNI.
    """

    version: str | None = None
    cipher: str | None = None
    bits: int | None = None
    subject: str | None = None
    issuer: str | None = None
    not_before: _dt.datetime | None = None
    not_after: _dt.datetime | None = None
    san: tuple[str, ...] = field(default=())
    peer_hostname: str | None = None

    @property
    def headline(self) -> str:
        """One line: ``"TLSv1.3 with TLS_AES_256_GCM_SHA384 (256 bits)"``."""
        text = self.version or "TLS (version unknown)"
        if self.cipher:
            text += f" with {self.cipher}"
        if self.bits:
            text += f" ({self.bits} bits)"
        return text

    def __str__(self) -> str:
        lines = [self.headline]
        if self.san or self.subject:
            names = ", ".join(self.san) if self.san else self.subject
            lines.append(f"certificate for {names}")
        if self.subject and self.san:
            lines.append(f"  subject {self.subject}")
        if self.issuer:
            lines.append(f"  issued by {self.issuer}")
        if self.not_before or self.not_after:
            lines.append(f"  valid {_fmt_time(self.not_before)} to {_fmt_time(self.not_after)}")
        if self.peer_hostname:
            lines.append(f"server name asked for: {self.peer_hostname}")
        return "\n".join(lines)


def _fmt_time(value: _dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "?"


def summarize(
    tls_info: Any,
    *,
    certificate: bytes | str | None = None,
) -> TLSSummary | None:
    """Describe a TLS session: version, cipher and the server's certificate.

    Args:
        tls_info: Any of: an ``ssl.SSLObject`` or ``ssl.SSLSocket``; the ``dict`` of transport
            extra information that aiosmtpd keeps in ``session.ssl`` after STARTTLS (keys
            ``ssl_object``, ``peercert``, ``cipher``…); an asyncio transport or anything with
            ``get_extra_info()``; an ``aiosmtplib.SMTP`` (``get_transport_info()``); ``None``.
        certificate: The server certificate (PEM text or DER bytes) when it cannot be found
            otherwise — only needed on the server side with a context not made by
            :class:`LabTLS`.

    Returns:
        A :class:`TLSSummary`, or ``None`` when ``tls_info`` shows no TLS at all. Never raises.
    """
    try:
        return _summarize(tls_info, certificate)
    except Exception:  # noqa: BLE001 # pragma: no cover - the contract is "never raise"
        return None


def _summarize(tls_info: Any, certificate: bytes | str | None) -> TLSSummary | None:
    if tls_info is None:
        return None
    extra: Mapping[str, Any] = {}
    ssl_object: Any = None
    if isinstance(tls_info, (ssl.SSLObject, ssl.SSLSocket)):
        ssl_object = tls_info
    elif isinstance(tls_info, Mapping):
        extra = tls_info
        ssl_object = extra.get("ssl_object")
    else:
        getter = getattr(tls_info, "get_extra_info", None) or getattr(tls_info, "get_transport_info", None)
        if getter is None:
            return None
        extra = {key: _safe(getter, key) for key in ("ssl_object", "peercert", "cipher")}
        ssl_object = extra.get("ssl_object")

    version = _safe(getattr(ssl_object, "version", None))
    cipher_tuple = _safe(getattr(ssl_object, "cipher", None)) or extra.get("cipher")
    cipher = bits = None
    if isinstance(cipher_tuple, tuple) and len(cipher_tuple) >= 3:
        cipher, proto, bits = cipher_tuple[0], cipher_tuple[1], cipher_tuple[2]
        version = version or proto

    server_side = bool(getattr(ssl_object, "server_side", False))
    der: bytes | None = None
    if certificate is not None:
        der = _to_der(certificate)
    elif ssl_object is not None and server_side:
        with _REGISTRY_LOCK:
            der = _SERVER_CERTS.get(_safe(lambda: ssl_object.context))
    elif ssl_object is not None:
        der = _safe(ssl_object.getpeercert, True)

    cert_fields: dict[str, Any] = dict(_parse_der(der)) if der else {}
    if not cert_fields:
        peercert = extra.get("peercert")
        if not server_side and isinstance(peercert, Mapping) and peercert:
            cert_fields = _parse_peercert_dict(peercert)

    if server_side:
        with _REGISTRY_LOCK:
            peer_hostname = _SNI_NAMES.get(ssl_object) if ssl_object is not None else None
    else:
        peer_hostname = _safe(lambda: ssl_object.server_hostname) if ssl_object else None

    if not (version or cipher or cert_fields):
        return None
    return TLSSummary(
        version=version,
        cipher=cipher,
        bits=bits if isinstance(bits, int) else None,
        peer_hostname=peer_hostname,
        **cert_fields,
    )


def _safe(func: Any, *args: Any) -> Any:
    if func is None:
        return None
    try:
        return func(*args)
    except Exception:  # noqa: BLE001 - a fact we cannot read is left out
        return None


def _to_der(certificate: bytes | str) -> bytes | None:
    try:
        if isinstance(certificate, str):
            return ssl.PEM_cert_to_DER_cert(certificate)
        if certificate.lstrip().startswith(b"-----BEGIN"):
            return ssl.PEM_cert_to_DER_cert(certificate.decode("ascii"))
        return bytes(certificate)
    except Exception:  # noqa: BLE001 - a fact we cannot read is left out
        return None


@functools.lru_cache(maxsize=32)
def _load_der(der: bytes) -> Any:
    """The parsed certificate (``cryptography.x509.Certificate``), or ``None``; cached."""
    try:
        from cryptography import x509

        return x509.load_der_x509_certificate(der)
    except Exception:  # noqa: BLE001 - a fact we cannot read is left out
        return None


def _parse_der(der: bytes) -> dict[str, Any]:
    """The certificate facts a summary shows (every connection presents the same one: cached)."""
    cert = _load_der(der)
    if cert is None:
        return {}
    from cryptography import x509

    fields: dict[str, Any] = {
        "subject": _safe(_name_to_text, cert.subject),
        "issuer": _safe(_name_to_text, cert.issuer),
        # *_utc appeared in cryptography 42; the naive variants are deprecated there.
        "not_before": _safe(lambda: cert.not_valid_before_utc),
        "not_after": _safe(lambda: cert.not_valid_after_utc),
    }
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        fields["san"] = tuple(
            str(name.value) for name in ext if isinstance(name, (x509.DNSName, x509.IPAddress))
        )
    except Exception:  # noqa: BLE001 - a fact we cannot read is left out
        fields["san"] = ()
    return fields


@dataclass(frozen=True)
class CertificateFacts:
    """What one certificate says, in the terms a client checks it by.

    Attributes:
        subject: Distinguished name of whom it was issued to (``O=smtplab, OU=Lab server``).
        issuer: Distinguished name of the authority that signed it.
        san: The names and addresses in its subjectAltName — the only names a client compares
            with the host it connected to (RFC 6125 §6.4.4: the subject's CN is not used when
            there is a subjectAltName).
        not_before: Start of its validity (UTC).
        not_after: End of its validity (UTC).
        key: The kind and size of its public key, e.g. ``"EC secp256r1, 256 bits"``.
        sha256: Its SHA-256 fingerprint: the hash of its DER bytes, as colon-separated hex
            (what ``openssl x509 -noout -fingerprint -sha256`` prints).
        is_ca: Whether it may sign other certificates (basicConstraints CA:TRUE).
        der: The certificate itself (DER bytes).
    """

    subject: str | None
    issuer: str | None
    san: tuple[str, ...]
    not_before: _dt.datetime | None
    not_after: _dt.datetime | None
    key: str
    sha256: str
    is_ca: bool = False
    der: bytes = field(default=b"", repr=False)

    @property
    def lab_issued(self) -> bool:
        """Whether a smtplab lab CA issued it (its issuer is :data:`LAB_ISSUER`)."""
        return self.issuer == LAB_ISSUER

    @property
    def self_signed(self) -> bool:
        """Issued by itself: the subject and the issuer are the same (a root CA looks like this)."""
        return self.subject is not None and self.subject == self.issuer

    def valid_at(self, when: _dt.datetime | None = None) -> bool:
        """Whether ``when`` (default: now, UTC) falls within the validity period."""
        when = when or _dt.datetime.now(_dt.timezone.utc)
        return bool(self.not_before and self.not_after and self.not_before <= when <= self.not_after)

    def __str__(self) -> str:
        rows = [
            ("subject", self.subject or "(none)"),
            ("names", ", ".join(self.san) or "(no subjectAltName)"),
            ("issuer", f"{self.issuer or '?'}{' (itself)' if self.self_signed else ''}"),
            ("valid", f"{_fmt_time(self.not_before)} to {_fmt_time(self.not_after)}"),
            ("key", self.key + (", may sign certificates (a CA)" if self.is_ca else "")),
            ("SHA-256", self.sha256),
        ]
        return "\n".join(f"{label:8} {value}" for label, value in rows)


def describe_certificate(certificate: bytes | str) -> CertificateFacts:
    """Read a certificate: names, issuer, validity, key and fingerprint.

    Args:
        certificate: PEM text (``str`` or ``bytes``) or DER bytes — e.g.
            ``lab.ca_pem``, or ``ssl_object.getpeercert(binary_form=True)``.

    Raises:
        ValueError: ``certificate`` is not a certificate.

    Example:
        >>> print(describe_certificate(default_lab_tls().ca_pem))  # doctest: +SKIP
        subject  O=smtplab, OU=Lab CA
        ...
    """
    der = _to_der(certificate)
    cert = _load_der(der) if der else None
    if der is None or cert is None:
        raise ValueError("not a certificate: pass PEM text (-----BEGIN CERTIFICATE-----) or DER bytes")
    import hashlib

    fields = {"san": (), **_parse_der(der)}
    return CertificateFacts(
        key=_key_text(cert),
        sha256=":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest()),
        is_ca=bool(_safe(_is_ca, cert)),
        der=der,
        **fields,
    )


def _key_text(cert: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    key = _safe(cert.public_key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}, {key.key_size} bits"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA, {key.key_size} bits"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__ if key is not None else "unknown"


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)


def _name_to_text(name: Any) -> str:
    # Most significant attribute first, the way certificates are usually read aloud.
    return ", ".join(f"{attr.rfc4514_attribute_name}={attr.value}" for attr in name)


def _parse_peercert_dict(peercert: Mapping[str, Any]) -> dict[str, Any]:
    """Fields from ``SSLSocket.getpeercert()``'s dict (only filled for a verified peer)."""

    def name(key: str) -> str | None:
        rdns = peercert.get(key) or ()
        parts = [f"{_SHORT_NAMES.get(k, k)}={v}" for rdn in rdns for (k, v) in rdn]
        return ", ".join(parts) or None

    def when(key: str) -> _dt.datetime | None:
        text = peercert.get(key)
        if not text:
            return None
        return _dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), _dt.timezone.utc)

    return {
        "subject": _safe(name, "subject"),
        "issuer": _safe(name, "issuer"),
        "not_before": _safe(when, "notBefore"),
        "not_after": _safe(when, "notAfter"),
        "san": tuple(
            value for kind, value in peercert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")
        ),
    }
