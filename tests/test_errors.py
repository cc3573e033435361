"""Tests for smtplab.errors: one root for exceptions and one for warnings, and every fix they suggest.

An error that teaches says what to change (``use tls='starttls'``, ``pass allow_remote=True``).
The second half of this file produces each such error for real, collects every
``option=value`` in its message, and applies each one as the message says — to the failing
call, or to the server or client it names — which must then be accepted (and connect).
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import socket
import ssl
import warnings
from pathlib import Path
from typing import Any

import pytest

import smtplab
from smtplab import errors
from smtplab.tls import LabTLS, default_lab_tls


def public_classes() -> list[type]:
    return [getattr(errors, name) for name in errors.__all__]


def test_every_exception_and_warning_has_a_smtplab_root_and_a_stdlib_category():
    for cls in public_classes():
        if issubclass(cls, Warning):
            assert issubclass(cls, smtplab.SmtpLabWarning) and issubclass(cls, UserWarning), cls
        else:
            assert issubclass(cls, smtplab.SmtpLabError), cls
            if cls is not smtplab.SmtpLabError:
                stdlib = [base for base in inspect.getmro(cls)[1:] if base.__module__ in ("builtins", "ssl")]
                assert stdlib and stdlib[0] is not Exception, f"{cls.__name__} has no stdlib category"


def test_every_public_exception_is_importable_from_smtplab():
    for cls in public_classes():
        assert getattr(smtplab, cls.__name__) is cls and cls.__name__ in smtplab.__all__


def test_no_other_module_defines_an_exception_or_warning():
    import importlib
    import pkgutil

    for module_info in pkgutil.walk_packages(smtplab.__path__, "smtplab."):
        if module_info.name == "smtplab.__main__":
            continue  # running it is the command line
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                assert module is errors, f"{value.__name__} is defined in {module.__name__}"


def test_mailbox_wait_for_raises_a_smtplab_timeout():
    box = smtplab.Mailbox()
    with pytest.raises(smtplab.MailboxTimeoutError, match="waited 0 s for 1 message") as caught:
        box.wait_for(1, timeout=0)
    assert isinstance(caught.value, TimeoutError)


# -- every suggested fix works -------------------------------------------------------------------

NAMES = {"default_lab_tls": default_lab_tls, "LabTLS": LabTLS}


def hints(message: str) -> dict[str, Any]:
    """Every ``option=value`` in a message, each value evaluated as the learner would type it."""
    found: dict[str, Any] = {}
    for match in re.finditer(r"(?<![\w.])([a-z_]+)=(?=\S)", message):
        rest = message[match.end() :]
        for end in [m.start() for m in re.finditer(r"\s", rest)] + [len(rest)]:
            text = rest[:end].rstrip(".,;:?!")
            while text:
                try:
                    ast.parse(text, mode="eval")
                    break
                except SyntaxError:
                    if not text.endswith(")"):
                        text = ""
                    else:
                        text = text[:-1]
            if text:
                found.setdefault(match.group(1), []).append(eval(text, dict(NAMES)))
                break
    return {name: values[-1] if len(values) == 1 else values for name, values in found.items()}


def test_hints_are_read_as_written():
    message = "use tls=None, or tls='starttls'; e.g. start_server(lists={'t': ['a@x']}) with port=0."
    assert hints(message) == {"tls": [None, "starttls"], "lists": {"t": ["a@x"]}, "port": 0}
    made = hints(
        "trust it: tls_context=default_lab_tls().client_context() or LabTLS.create(hosts=('a', 'b'))."
    )
    assert isinstance(made["tls_context"], ssl.SSLContext) and made["hosts"] == ("a", "b")


def accepted(**options: Any) -> smtplab.LabServer:
    """A LabServer made with ``options``: all of them checked, nothing started."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", smtplab.SmtpLabWarning)
        return smtplab.LabServer(**options)


@pytest.mark.parametrize(
    "failing",
    [
        {"host": "0.0.0.0"},
        {"require_tls": True},
        {"require_tls": True, "tls": "implicit"},
        {"tls": "none"},
        {"tls": "ssl"},
        {"auth": ["alice"]},
    ],
)
def test_every_option_a_refused_option_suggests_is_accepted(failing: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        smtplab.LabServer(**failing)
    suggested = hints(str(caught.value))
    assert suggested, f"no fix suggested in: {caught.value}"
    for option, values in suggested.items():
        for value in values if isinstance(values, list) else [values]:
            if failing.get(option, object()) != value:  # a fix changes something; the rest says what failed
                accepted(**{**failing, option: value})


def test_a_mistyped_option_names_one_that_is_accepted() -> None:
    with pytest.raises(TypeError) as caught:
        smtplab.LabServer(reply_dealy=0.5)
    (meant,) = re.findall(r"Did you mean '(\w+)'\?", str(caught.value))
    assert accepted(**{meant: 0.5}).reply_delay == 0.5


def test_a_taken_port_suggests_port_zero():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        with pytest.raises(smtplab.PortInUseError) as caught:
            smtplab.start_server(port=squatter.getsockname()[1], name="taken")
        with smtplab.start_server(name="taken", **hints(str(caught.value))) as server:
            assert server.port not in (0, squatter.getsockname()[1])


def test_an_open_socket_directory_suggests_private_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # "~/.smtplab/lab.sock" lands in the test's directory
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with pytest.raises(smtplab.ServerStartError) as caught:
        smtplab.start_server(unix_socket=shared / "lab.sock", name="sock")
    suggested = hints(str(caught.value))["unix_socket"]
    assert suggested == ["~/.smtplab/lab.sock", True]
    for value in suggested:
        with smtplab.start_server(unix_socket=value, name="sock") as server:
            assert os.stat(os.path.dirname(server.socket_path)).st_mode & 0o077 == 0


def test_a_replaced_server_warning_suggests_a_name_that_keeps_both():
    with smtplab.start_server(name="cell"):
        with pytest.warns(smtplab.ReplacedServerWarning) as caught:
            replacement = smtplab.start_server(name="cell")
        with replacement:
            with warnings.catch_warnings():
                warnings.simplefilter("error", smtplab.ReplacedServerWarning)
                with smtplab.start_server(**hints(str(caught[0].message))) as other:
                    assert replacement.running and other.running and other.name != "cell"


def test_a_shared_host_warning_suggests_a_private_socket(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setattr("smtplab.server._shared_host_hinted", False)
    with pytest.warns(smtplab.SharedHostWarning) as caught:
        smtplab.start_server(name="hub").stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error", smtplab.SharedHostWarning)
        monkeypatch.setattr("smtplab.server._shared_host_hinted", False)
        with smtplab.start_server(name="hub", **hints(str(caught[0].message))) as server:
            assert server.socket_path


@pytest.mark.server_options(tls="implicit")
def test_a_plain_client_at_an_implicit_tls_server_is_told_the_mode(lab_server):
    with pytest.raises(smtplab.TLSMismatchError) as caught:
        smtplab.SyncClient(lab_server).connect()
    with smtplab.SyncClient(lab_server, **hints(str(caught.value))) as client:
        assert client.tls_active and client.noop().code == 250


@pytest.mark.parametrize("server_tls", [None, "starttls"])
def test_implicit_tls_at_a_plain_port_is_told_both_ways_to_speak_there(server_tls):
    with smtplab.start_server(tls=server_tls, lab_tls=default_lab_tls(), name="plain-port") as server:
        with pytest.raises(smtplab.TLSMismatchError) as caught:
            smtplab.SyncClient(server, tls="implicit").connect()
        suggested = hints(str(caught.value))["tls"]
        assert suggested == ["starttls", None]
        usable = "starttls" if server_tls else None  # "if the server offers STARTTLS, or tls=None"
        with smtplab.SyncClient(server, tls=usable) as client:
            assert client.noop().code == 250


def test_an_untrusted_certificate_is_told_how_to_trust_the_lab_ca():
    with smtplab.start_server(tls="implicit", lab_tls=default_lab_tls(), name="untrusted") as server:
        where = {"host": server.host, "port": server.port, "tls": "implicit", "timeout": 5}
        with pytest.raises(smtplab.TLSCertificateError) as caught:
            smtplab.SyncClient(**where).connect()  # not made from the server: system CAs only
        suggested = hints(str(caught.value))
        assert set(suggested) == {"tls_context", "cafile"}
        for option, value in suggested.items():
            with smtplab.SyncClient(**where, **{option: value}) as client:
                assert client.tls_active, option


def test_a_certificate_for_another_name_is_told_how_to_issue_one():
    other = LabTLS.create(hosts="mail.lab.test")
    with smtplab.start_server(tls="implicit", lab_tls=other, name="misnamed") as server:
        where = {"host": server.host, "port": server.port, "tls": "implicit", "timeout": 5}
        with pytest.raises(smtplab.TLSCertificateError) as caught:
            smtplab.SyncClient(**where, tls_context=other.client_context()).connect()
    hosts = hints(str(caught.value))["hosts"]
    issued = LabTLS.create(hosts=hosts)
    with smtplab.start_server(tls="implicit", lab_tls=issued, name="misnamed") as server:
        where["port"] = server.port
        with smtplab.SyncClient(**where, tls_context=issued.client_context()) as client:
            assert client.tls_active


def test_a_silent_server_suggests_implicit_tls():
    with smtplab.start_server(tls="implicit", lab_tls=default_lab_tls(), name="silent") as server:
        where = {"host": server.host, "port": server.port}  # not made from the server: no early check
        with pytest.raises(smtplab.ClientTimeoutError) as caught:
            smtplab.SyncClient(**where, timeout=0.5).connect()
        with smtplab.SyncClient(
            **where, **hints(str(caught.value)), tls_context=server.client_context(), timeout=5
        ) as client:
            assert client.tls_active


def test_a_server_without_starttls_suggests_starting_it_with_starttls():
    with smtplab.start_server(name="no-starttls") as server:
        with pytest.raises(smtplab.TLSMismatchError) as caught:
            smtplab.SyncClient(server, tls="starttls").connect()
    suggested = hints(str(caught.value))["tls"]
    assert suggested[0] == "starttls"  # "Start the lab server with tls='starttls'"
    with smtplab.start_server(name="no-starttls", tls=suggested[0]) as server:
        with smtplab.SyncClient(server, tls="starttls") as client:
            assert client.tls_active


def test_login_without_auth_offered_suggests_how_to_see_the_refusal(lab_server):
    with smtplab.SyncClient(lab_server) as client:
        with pytest.raises(smtplab.NoCommonMechanismError) as caught:
            client.login("alice", "wonderland")
        reply = client.login("alice", "wonderland", **hints(str(caught.value)))
        assert reply.code >= 500  # the server refuses, as the hint promised


def test_a_message_without_headers_is_told_which_envelope_to_pass(lab_server):
    from email.message import EmailMessage

    message = EmailMessage()
    message.set_content("no headers")
    with smtplab.SyncClient(lab_server) as client:
        options: dict[str, Any] = {}
        for _ in range(2):  # first the sender is missing, then the recipients
            with pytest.raises(ValueError) as caught:
                client.send_message(message, **options)
            options.update(hints(str(caught.value)))
        assert client.send_message(message, **options).ok
    assert lab_server.mailbox.wait_for(1)[0].rcpt_tos == ("bob@example.test",)


def test_expn_without_lists_names_an_option_that_gives_one(lab_server):
    with smtplab.SyncClient(lab_server) as client:
        client.ehlo()
        reply = client.expn("team")
    assert reply.code == 502
    with smtplab.start_server(name="lists", **hints(reply.message)) as server:
        with smtplab.SyncClient(server) as client:
            client.ehlo()
            assert client.expn("team").code == 250
