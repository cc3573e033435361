"""Tests for smtplab.tls: the lab CA, its contexts, TLS summaries and error explanations."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

import smtplab.tls as tls_module
from smtplab.diagnose import explain_ssl_error
from smtplab.tls import (
    DEFAULT_HOSTS,
    LAB_ISSUER,
    TLS_MODES,
    LabTLS,
    TLSFiles,
    TLSSummary,
    check_tls_mode,
    default_lab_tls,
    describe_certificate,
    summarize,
)
from tests.conftest import TIMEOUT, free_port, run
from tests.handshake import connect_error, echo_once, tls_roundtrip


@pytest.fixture
def lab(lab_tls: LabTLS) -> LabTLS:
    return lab_tls


# --------------------------------------------------------------------------- LabTLS


def test_contexts_are_built_once_and_reused(lab: LabTLS) -> None:
    assert lab.server_context() is lab.server_context()
    assert lab.client_context() is lab.client_context()
    assert lab.server_context() is not lab.client_context()


def test_server_context_settings(lab: LabTLS) -> None:
    ctx = lab.server_context()
    assert ctx.protocol == ssl.PROTOCOL_TLS_SERVER
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    # aiosmtpd logs a warning for anything else.
    assert ctx.verify_mode in (ssl.CERT_NONE, ssl.CERT_OPTIONAL)
    assert ctx.check_hostname is False


def test_client_context_settings(lab: LabTLS) -> None:
    ctx = lab.client_context()
    assert ctx.protocol == ssl.PROTOCOL_TLS_CLIENT
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    # Trusts the lab CA and nothing else.
    assert len(ctx.get_ca_certs()) == 1


def test_create_validates_options() -> None:
    with pytest.raises(ValueError, match="hosts"):
        LabTLS.create(hosts=())
    with pytest.raises(ValueError, match="hosts"):
        LabTLS.create(hosts=("localhost", ""))
    with pytest.raises(ValueError, match="valid_days"):
        LabTLS.create(valid_days=0)


def test_create_accepts_a_single_host_string() -> None:
    assert LabTLS.create(hosts="mail.lab.test").hosts == ("mail.lab.test",)


def test_repr_and_pem_show_no_private_key(lab: LabTLS) -> None:
    assert repr(lab) == "<LabTLS for localhost, 127.0.0.1, ::1>"
    assert lab.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in lab.ca_pem


def test_default_lab_tls_is_lazy_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls_module, "_default", None)
    results: list[LabTLS] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(TIMEOUT)
        results.append(default_lab_tls())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(results) == 8
    assert all(result is results[0] for result in results)
    assert default_lab_tls() is results[0]
    assert results[0].hosts == DEFAULT_HOSTS


def test_import_creates_nothing() -> None:
    code = "import smtplab.tls as t; print(t._default is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True"]


# --------------------------------------------------------------------------- handshakes


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_client_context_handshakes_with_server_context(lab: LabTLS, server_hostname: str) -> None:
    echo, ssl_object = run(tls_roundtrip(lab.server_context(), lab.client_context(), server_hostname))
    assert echo == b"hello\n"
    assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")


def test_system_trust_store_rejects_the_lab_ca(lab: LabTLS) -> None:
    error, port = run(connect_error(lab.server_context(), ssl.create_default_context()))
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.reason == "CERTIFICATE_VERIFY_FAILED"
    message = explain_ssl_error(error, host="localhost", port=port, expected_mode="implicit", lab_tls=lab)
    assert "trust the lab ca" in message.lower()
    assert "cafile=" in message and "tls_context=" in message


def test_another_lab_ca_is_not_trusted(lab: LabTLS) -> None:
    stranger = LabTLS.create()
    error, _ = run(connect_error(lab.server_context(), stranger.client_context()))
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer" in error.verify_message


def test_wrong_hostname_fails(lab: LabTLS) -> None:
    error, port = run(connect_error(lab.server_context(), lab.client_context(), "mail.example"))
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.reason == "CERTIFICATE_VERIFY_FAILED"
    message = explain_ssl_error(
        error,
        host="mail.example",
        port=port,
        expected_mode="starttls",
        certificate=describe_certificate(lab.server_der),
    )
    assert "is for localhost, 127.0.0.1, ::1" in message
    assert "you connected to 'mail.example'" in message


def test_issue_shares_the_ca_so_only_the_names_differ(lab: LabTLS) -> None:
    other = lab.issue(hosts="mail.example.test")
    assert other.ca is lab.ca and other.hosts == ("mail.example.test",) and other is not lab
    # the lab's own client context trusts the new certificate for its name, and only for it
    echo, ssl_object = run(tls_roundtrip(other.server_context(), lab.client_context(), "mail.example.test"))
    assert echo == b"hello\n" and summarize(ssl_object).san == ("mail.example.test",)
    error, _ = run(connect_error(other.server_context(), lab.client_context(), "localhost"))
    assert isinstance(error, ssl.SSLCertVerificationError) and "Hostname mismatch" in error.verify_message
    with pytest.raises(ValueError, match="hosts"):
        lab.issue(hosts=())


# --------------------------------------------------------------------------- certificates


def openssl_x509(pem: Path, *options: str) -> str:
    done = subprocess.run(
        ["openssl", "x509", "-in", str(pem), "-noout", *options],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_describe_certificate_agrees_with_openssl(lab: LabTLS, tmp_path: Path) -> None:
    files = lab.write_files(tmp_path)
    leaf, ca = lab.server_certificate, lab.ca_certificate
    for facts, pem in ((leaf, files.server_cert), (ca, files.ca_cert)):
        fingerprint = openssl_x509(pem, "-fingerprint", "-sha256").strip().split("=", 1)[1]
        assert facts.sha256 == fingerprint
    assert leaf.san == ("localhost", "127.0.0.1", "::1")
    assert "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" in openssl_x509(
        files.server_cert, "-ext", "subjectAltName"
    )
    assert leaf.subject == "O=smtplab, OU=Lab server" and leaf.issuer == ca.subject == "O=smtplab, OU=Lab CA"
    assert leaf.key == ca.key == "EC secp256r1, 256 bits"  # trustme's default key type
    assert ca.is_ca and ca.self_signed and not leaf.is_ca and not leaf.self_signed
    assert leaf.lab_issued and leaf.issuer == LAB_ISSUER
    assert leaf.valid_at() and not leaf.valid_at(leaf.not_after + (leaf.not_after - leaf.not_before))
    text = str(leaf)
    assert "names    localhost, 127.0.0.1, ::1" in text and f"SHA-256  {leaf.sha256}" in text
    assert "(itself)" in str(ca) and "may sign certificates" in str(ca)


def test_describe_certificate_takes_pem_text_pem_bytes_and_der(lab: LabTLS) -> None:
    pem = lab.ca_pem
    der = ssl.PEM_cert_to_DER_cert(pem)
    facts = {describe_certificate(pem), describe_certificate(pem.encode()), describe_certificate(der)}
    assert len(facts) == 1 and facts.pop().der == der
    for junk in ("hello", b"\x30\x03abc", b""):
        with pytest.raises(ValueError, match="not a certificate"):
            describe_certificate(junk)


def test_describe_certificate_reads_rsa_keys_and_a_common_name() -> None:
    import trustme

    issued = trustme.CA().issue_cert(
        "mx.example.test", common_name="legacy.example.test", key_type=trustme.KeyType.RSA
    )
    leaf = describe_certificate(issued.cert_chain_pems[0].bytes())
    assert leaf.key == "RSA, 2048 bits"
    assert "CN=legacy.example.test" in (leaf.subject or "") and leaf.san == ("mx.example.test",)
    assert not leaf.lab_issued  # another CA's certificate: no lab-CA advice for its server


# --------------------------------------------------------------------------- files


def test_write_files_default_directory_is_private(lab: LabTLS) -> None:
    files = lab.write_files()
    assert isinstance(files, TLSFiles)
    assert stat.S_IMODE(os.stat(files.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(files.server_key).st_mode) == 0o600
    assert lab.write_files().directory == files.directory  # reused
    assert files.ca_cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in files.server_key.read_text()


def test_written_pems_work_with_the_ssl_module(lab: LabTLS, tmp_path: Path) -> None:
    files = lab.write_files(tmp_path / "tls")
    assert files.directory == tmp_path / "tls"
    client_ctx = ssl.create_default_context(cafile=files.ca_cert)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.server_cert, files.server_key)
    echo, _ = run(tls_roundtrip(server_ctx, client_ctx))
    assert echo == b"hello\n"


def test_default_directory_is_removed_at_exit() -> None:
    code = "from smtplab.tls import LabTLS; print(LabTLS.create().write_files().directory)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    directory = Path(out.stdout.strip())
    assert directory.name.startswith("smtplab-tls-")
    assert not directory.exists()


# --------------------------------------------------------------------------- summaries


def test_summarize_client_side(lab: LabTLS) -> None:
    _, ssl_object = run(tls_roundtrip(lab.server_context(), lab.client_context()))
    summary = summarize(ssl_object)
    assert isinstance(summary, TLSSummary)
    assert summary.version in ("TLSv1.2", "TLSv1.3")
    assert summary.cipher and summary.bits and summary.bits >= 128
    assert summary.subject == "O=smtplab, OU=Lab server"
    assert summary.issuer == "O=smtplab, OU=Lab CA"
    assert summary.san == ("localhost", "127.0.0.1", "::1")
    assert summary.not_before and summary.not_after
    assert summary.not_before < summary.not_after
    assert summary.peer_hostname == "localhost"
    text = str(summary)
    assert text.startswith(f"{summary.version} with {summary.cipher} ({summary.bits} bits)")
    assert "certificate for localhost, 127.0.0.1, ::1" in text
    assert "issued by O=smtplab, OU=Lab CA" in text


def test_summarize_server_side_uses_its_own_certificate(lab: LabTLS) -> None:
    seen: dict[str, Any] = {}

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        seen["ssl_object"] = summarize(writer.get_extra_info("ssl_object"))
        seen["transport"] = summarize(transport)
        # The shape aiosmtpd keeps in session.ssl after STARTTLS.
        seen["extra"] = summarize(
            {k: transport.get_extra_info(k) for k in ("ssl_object", "peercert", "cipher")}
        )
        await echo_once(reader, writer)

    _, client_side = run(tls_roundtrip(lab.server_context(), lab.client_context(), on_server=record))
    client = summarize(client_side)
    for key in ("ssl_object", "transport", "extra"):
        server = seen[key]
        assert server is not None, key
        assert (server.version, server.cipher, server.subject, server.san) == (
            client.version,
            client.cipher,
            client.subject,
            client.san,
        )
        assert server.peer_hostname == "localhost"  # from SNI


def test_summarize_with_explicit_certificate(lab: LabTLS) -> None:
    pem = lab.server_cert.cert_chain_pems[0].bytes()
    summary = summarize({"cipher": ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)}, certificate=pem)
    assert summary is not None
    assert summary.version == "TLSv1.3" and summary.bits == 128
    assert summary.san == lab.hosts


def test_summarize_peercert_dict_fallback() -> None:
    peercert = {
        "subject": ((("commonName", "mail.lab.test"),),),
        "issuer": ((("organizationName", "Lab CA"),),),
        "notBefore": "Jan  1 00:00:00 2026 GMT",
        "notAfter": "Apr  1 00:00:00 2026 GMT",
        "subjectAltName": (("DNS", "mail.lab.test"),),
    }
    summary = summarize({"peercert": peercert, "cipher": ("X", "TLSv1.2", 256)})
    assert summary is not None
    assert summary.subject == "CN=mail.lab.test"
    assert summary.issuer == "O=Lab CA"
    assert summary.san == ("mail.lab.test",)
    assert summary.not_before is not None and summary.not_before.year == 2026


class _Broken:
    def version(self) -> str:
        raise RuntimeError("boom")

    def get_extra_info(self, key: str) -> Any:
        raise RuntimeError("boom")


@pytest.mark.parametrize("value", [None, {}, object(), "TLS", 42, _Broken(), {"cipher": "x"}])
def test_summarize_never_raises(value: Any) -> None:
    assert summarize(value) is None


def test_summary_str_with_unknown_fields() -> None:
    assert str(TLSSummary()) == "TLS (version unknown)"


def test_aiosmtpd_implicit_tls_session_has_no_ssl_dict(lab: LabTLS) -> None:
    """aiosmtpd fills session.ssl only after STARTTLS; with implicit TLS use the transport."""
    seen: dict[str, Any] = {}

    class Handler:
        async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: Any) -> str:
            seen["session.ssl"] = session.ssl
            seen["transport"] = summarize(server.transport)
            return "250 OK"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=free_port(),
        ready_timeout=5,
        ssl_context=lab.server_context(),
    )
    controller.start()
    try:

        async def talk() -> TLSSummary | None:
            client = aiosmtplib.SMTP(
                hostname="127.0.0.1",
                port=controller.port,
                use_tls=True,
                tls_context=lab.client_context(),
                timeout=5,
            )
            async with client:
                await client.noop()
                return summarize(client)

        client_summary = run(talk())
    finally:
        controller.stop()
    assert seen["session.ssl"] is None
    assert seen["transport"] is not None and client_summary is not None
    assert seen["transport"].subject == client_summary.subject == "O=smtplab, OU=Lab server"
    assert client_summary.peer_hostname == "127.0.0.1"


# --------------------------------------------------------------------------- the TLS modes


def test_the_tls_modes_are_one_vocabulary() -> None:
    assert TLS_MODES == (None, "starttls", "implicit")
    for mode in TLS_MODES:
        assert check_tls_mode(mode) == mode


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        ("none", "tls=None"),
        ("plain", "tls=None"),
        (False, "tls=None"),
        ("ssl", "tls='implicit'"),
        (True, "tls='implicit'"),
        ("STARTTLS ", "tls='starttls'"),
        ("start_tls", "tls='starttls'"),
    ],
)
def test_a_near_miss_is_refused_with_the_mode_it_means(wrong: Any, hint: str) -> None:
    with pytest.raises(ValueError, match=f"Did you mean {hint}") as caught:
        check_tls_mode(wrong)
    assert "None (plain text), 'starttls'" in str(caught.value)
    with pytest.raises(ValueError, match="must be None"):
        check_tls_mode("sideways")
