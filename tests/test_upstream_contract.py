"""The upstream contract: every aiosmtpd, aiosmtplib and asyncio internal smtplab relies on.

Read this file after bumping aiosmtpd or aiosmtplib. Each private name the two adapter modules
(smtplab/_aiosmtpd.py, smtplab/_aiosmtplib.py) use is listed in their ``UPSTREAM_NAMES`` and
checked here for the shape the adapter relies on: a method's parameters, an attribute's initial
value, a stock reply's exact text. A failure names what moved; fix the adapter, then the shape
here. No other module of smtplab, and no other test, may use these names.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import aiosmtpd.smtp
import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtplib.protocol import SMTPProtocol

from smtplab import _aiosmtpd, _aiosmtplib, handlers

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = {"_aiosmtpd.py", "_aiosmtplib.py"}

#: The private names of the issue that first gathered them, plus those found since: no module
#: but the adapters may mention them (the house check greps for these).
PRIVATE_NAMES = (
    "_original_transport",
    "_auth_require_tls",
    "_cb_client_connected",
    "_smtp_methods",
    "_syntax_available",
    "_create_server",
    "_factory_invoker",
    "_thread_exception",
    "_timeout_cb",
    "_timeout_duration",
    "_handler_coroutine",
    "_call_handler_hook",
    "_ehlo_hook_ver",
    "_create_session",
    "_login_data",
    "_trigger_server",
    "_auth_methods",
    "_authenticator",
    "_authenticate",
    "_transports",
    "_handle_client",
    "__signature__",
    "_response_waiter",
    "_response_pending",
    "_buffer",
)


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


class Hooks:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        return responses


@pytest.fixture
def loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def smtp(loop: asyncio.AbstractEventLoop) -> SMTP:
    return SMTP(Hooks(), loop=loop)


# -- aiosmtpd.smtp.SMTP ---------------------------------------------------------------------------

SMTP_METHODS = {
    "_cb_client_connected": (["self", "reader", "writer"], False),
    "_create_session": (["self"], False),
    "_timeout_cb": (["self"], False),
    "_call_handler_hook": (["self", "command", "args"], True),
    "_syntax_available": (["self", "method"], False),
    "_authenticate": (["self", "mechanism", "auth_data"], False),
    "_handle_client": (["self"], True),
    # Public, but overridden or called by the adapter with these arguments:
    "push": (["self", "status"], True),
    "check_helo_needed": (["self", "helo"], True),
    "check_auth_needed": (["self", "caller_method"], True),
    "challenge_auth": (["self", "challenge", "encode_to_b64", "log_client_response"], True),
    "connection_made": (["self", "transport"], False),
    "connection_lost": (["self", "error"], False),
    "data_received": (["self", "data"], False),
    "eof_received": (["self"], False),
    "handle_exception": (["self", "error"], True),
    **{f"smtp_{verb}": (["self", "arg"], True) for verb in ("MAIL", "RCPT", "DATA", "AUTH", "HELP", "EXPN")},
    "smtp_EHLO": (["self", "hostname"], True),
    "smtp_STARTTLS": (["self", "arg"], True),
}


@pytest.mark.parametrize("name", sorted(SMTP_METHODS))
def test_smtp_methods_keep_their_parameters(name: str) -> None:
    expected, coroutine = SMTP_METHODS[name]
    method = getattr(SMTP, name)
    assert parameters(method) == expected, f"aiosmtpd.smtp.SMTP.{name} changed its parameters"
    assert inspect.iscoroutinefunction(method) is coroutine, f"SMTP.{name} changed between def and async def"


def test_smtp_attributes_start_as_the_adapter_expects(smtp: SMTP) -> None:
    assert smtp._original_transport is None  # set by smtp_STARTTLS
    assert smtp._auth_require_tls is True  # the default of auth_require_tls=
    assert smtp._timeout_duration == 300  # the default of timeout=
    assert smtp._handler_coroutine is None  # the _handle_client task, once connected
    assert smtp._ehlo_hook_ver == "new"  # a 5-parameter handle_EHLO
    assert smtp._authenticator is None  # no authenticator= given
    assert set(smtp._smtp_methods) >= {"EHLO", "MAIL", "RCPT", "DATA", "AUTH", "HELP", "EXPN", "QUIT"}
    assert smtp._smtp_methods["MAIL"] == smtp.smtp_MAIL
    assert isinstance(SMTP.command_size_limits, dict) and SMTP.command_size_limits["MAIL"] == 512
    assert (SMTP.line_length_limit, SMTP.command_size_limit) == (1001, 512)
    assert isinstance(smtp._create_session(), Session)


def test_smtp_reads_line_limits_from_the_instance() -> None:
    # LabSMTP sets line_length_limit on the instance before SMTP.__init__ builds its reader.
    assert "limit=self.line_length_limit" in inspect.getsource(SMTP.__init__)
    assert "self.command_size_limits[command]" in inspect.getsource(SMTP._handle_client)


def test_the_client_connected_callback_keeps_the_reader(smtp: SMTP, loop: asyncio.AbstractEventLoop) -> None:
    reader = asyncio.StreamReader(loop=loop)
    smtp._cb_client_connected(reader, None)  # type: ignore[arg-type]
    assert smtp._reader is reader


def test_old_style_ehlo_hooks_are_told_apart_by_their_parameters(loop: asyncio.AbstractEventLoop) -> None:
    class Old:
        async def handle_EHLO(self, server, session, envelope, hostname):
            return "250 hi"

    with pytest.warns(DeprecationWarning, match="5-argument handle_EHLO"):
        assert SMTP(Old(), loop=loop)._ehlo_hook_ver == "old"


def test_authenticate_hands_the_answer_to_the_authenticator(loop: asyncio.AbstractEventLoop) -> None:
    seen: list[tuple[str, Any]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((mechanism, auth_data))
        return aiosmtpd.smtp.AuthResult(success=True)

    smtp = SMTP(Hooks(), loop=loop, authenticator=authenticator)
    smtp.session, smtp.envelope = Session(loop), aiosmtpd.smtp.Envelope()
    assert smtp._authenticate("CRAM-MD5", "data").success and seen == [("CRAM-MD5", "data")]
    assert _aiosmtpd.authenticator_present(smtp) and not _aiosmtpd.authenticator_present(
        SMTP(Hooks(), loop=loop)
    )


def test_stock_replies_the_adapter_rewords_are_still_sent_word_for_word() -> None:
    # Join literals split over lines, then look for each text as a whole string literal.
    source = re.sub(r"""(['"])\s*\n\s*(['"])""", "", inspect.getsource(aiosmtpd.smtp))
    for text in _aiosmtpd.STOCK_REPLIES:
        written = [f"'{text}'", f'"{text}"']
        if "{" in text:  # a value in it: an f-string, or a literal and the value joined by +
            written += [f"f'{text}'", f'f"{text}"']
            prefix, _, name = text.rpartition("{")
            written += [f"'{prefix}' + {name.rstrip('}')}", f'"{prefix}" + {name.rstrip("}")}']
            if text.endswith("}"):  # or built up: syntaxerr = '501 Syntax: …'; syntaxerr += '…'
                written += [f"'{prefix}'", f'"{prefix}"']
        assert any(form in source for form in written), f"aiosmtpd no longer sends {text!r}"


def test_aiosmtpd_logs_to_mail_log_and_wraps_a_failed_starttls_handshake() -> None:
    # The adapter quiets the "mail.log" logger on lab servers' threads, and tells a client's
    # failed STARTTLS handshake (TLSSetupException, raised from the ssl error) from a bug.
    assert aiosmtpd.smtp.log.name == "mail.log"
    assert issubclass(aiosmtpd.smtp.TLSSetupException, Exception)
    source = inspect.getsource(SMTP.smtp_STARTTLS)
    assert "raise TLSSetupException() from error" in source
    assert "status = await self.handle_exception(error)" in inspect.getsource(SMTP._handle_client)


def test_the_hooks_aiosmtpd_calls_are_the_ones_the_guard_knows() -> None:
    # smtplab.handlers.HOOKS names every hook aiosmtpd calls; a learner's other handle_ names warn.
    source = inspect.getsource(aiosmtpd.smtp)
    called = set(re.findall(r"""_call_handler_hook\(\s*['"](\w+)['"]""", source))
    called |= set(re.findall(r"""_handle_hooks\.get\(\s*['"](\w+)['"]""", source))
    called |= {"exception"} if "self.event_handler.handle_exception(" in source else set()
    assert {f"handle_{name}" for name in called} == handlers.HOOKS


def test_session_keeps_login_data_in_a_private_attribute(loop: asyncio.AbstractEventLoop) -> None:
    session = Session(loop)
    assert session._login_data is None and isinstance(Session.login_data, property)


# -- aiosmtpd.controller.Controller ---------------------------------------------------------------

CONTROLLER_METHODS = {
    "_create_server": ["self"],
    "_factory_invoker": ["self"],
    "_run": ["self", "ready_event"],
    "_trigger_server": ["self"],
    "_cleanup": ["self"],
    "factory": ["self"],
    "stop": ["self", "no_assert"],
}


@pytest.mark.parametrize("name", sorted(CONTROLLER_METHODS))
def test_controller_methods_keep_their_parameters(name: str) -> None:
    assert parameters(getattr(Controller, name)) == CONTROLLER_METHODS[name]


def test_controller_state_is_where_the_adapter_looks() -> None:
    assert Controller._thread is None and Controller._thread_exception is None
    controller = Controller(Hooks(), hostname="127.0.0.1", port=0, ready_timeout=1, ssl_context=None)
    try:
        assert {"ready_timeout", "SMTP_kwargs", "loop", "handler", "ssl_context", "server"} <= set(
            dir(controller)
        )
        assert controller.SMTP_kwargs == {"enable_SMTPUTF8": True}

        async def build() -> Any:  # on the Controller's loop, as a connection would
            return controller._factory_invoker()  # builds a session with factory(), keeps it

        smtpd = controller.loop.run_until_complete(build())
        assert isinstance(smtpd, SMTP) and controller.smtpd is smtpd and smtpd.loop is controller.loop
    finally:
        controller.loop.close()


def test_the_selector_loop_keeps_its_transports(loop: asyncio.AbstractEventLoop) -> None:
    assert hasattr(loop, "_transports") and len(loop._transports) == 0


# -- aiosmtplib -----------------------------------------------------------------------------------

PROTOCOL_METHODS = {
    "write": (["self", "data"], False),
    "read_response": (["self", "timeout"], True),
    "execute_data_command": (["self", "message", "timeout"], True),
    "execute_command": (["self", "args", "timeout"], True),
    "data_received": (["self", "data"], False),
}


@pytest.mark.parametrize("name", sorted(PROTOCOL_METHODS))
def test_smtp_protocol_methods_keep_their_parameters(name: str) -> None:
    expected, coroutine = PROTOCOL_METHODS[name]
    method = getattr(SMTPProtocol, name)
    assert parameters(method) == expected and inspect.iscoroutinefunction(method) is coroutine


def test_smtp_protocol_can_become_the_recording_subclass() -> None:
    # record() changes a connected protocol's class in place and adds two attributes.
    assert "__slots__" not in vars(SMTPProtocol)
    assert _aiosmtplib._RecordingProtocol.__bases__ == (SMTPProtocol,)
    assert "SMTPProtocol(" in inspect.getsource(aiosmtplib.SMTP._create_connection)


def test_smtp_protocol_drops_a_reply_no_command_waits_for(loop: asyncio.AbstractEventLoop) -> None:
    # The recorder reads the waiter, the pending flag and the buffer to keep what aiosmtplib drops.
    protocol = SMTPProtocol(loop=loop)
    protocol.connection_made(asyncio.Transport(extra={}))
    assert protocol._response_pending is True and isinstance(protocol._response_waiter, asyncio.Future)
    protocol.data_received(b"220 lab.test ready\r\n")
    assert protocol._response_waiter.result().code == 220 and protocol._buffer == bytearray()
    protocol._response_pending = False  # as read_response() leaves it, with a fresh waiter
    protocol._response_waiter = loop.create_future()
    protocol.data_received(b"421 4.7.0 closing\r\n")
    assert not protocol._response_waiter.done() and protocol._buffer == bytearray()  # dropped
    protocol._response_pending = True
    protocol.data_received(b"250 one\r\n421 4.7.0 two\r\n")  # two replies in one read
    assert protocol._response_waiter.result().code == 250 and bytes(protocol._buffer) == b"421 4.7.0 two\r\n"


def test_smtp_client_attributes_are_where_the_adapter_reads_them() -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=25)
    assert smtp.protocol is None and smtp.transport is None
    assert smtp.esmtp_extensions == {} and smtp.server_auth_methods == []
    assert smtp.last_helo_response is None
    assert isinstance(aiosmtplib.SMTP.last_ehlo_response, property)
    assert aiosmtplib.SMTP.last_ehlo_response.fset is not None
    smtp.last_ehlo_response = aiosmtplib.SMTPResponse(250, "lab.test\nSIZE 100\nAUTH PLAIN LOGIN")
    assert smtp.esmtp_extensions["size"] == "100" and smtp.server_auth_methods == ["plain", "login"]
    assert parameters(aiosmtplib.SMTP.close) == ["self"]


# -- the adapters list every name, and are the only ones to use them ---------------------------


def test_every_name_the_adapters_list_is_checked_here() -> None:
    checked = {
        "aiosmtpd.smtp.SMTP": set(SMTP_METHODS)
        | {
            "_original_transport",
            "_auth_require_tls",
            "_timeout_duration",
            "_handler_coroutine",
            "_ehlo_hook_ver",
            "_authenticator",
            "_smtp_methods",
            "_reader",
            "command_size_limits",
            "line_length_limit",
            "command_size_limit",
        },
        "aiosmtpd.smtp.Session": {"_login_data"},
        "aiosmtpd.controller.Controller": set(CONTROLLER_METHODS) | {"_thread", "_thread_exception"},
        "asyncio.BaseSelectorEventLoop": {"_transports"},
        "aiosmtplib.protocol.SMTPProtocol": set(PROTOCOL_METHODS)
        | {"_response_waiter", "_response_pending", "_buffer"},
        "aiosmtplib.SMTP": {
            "protocol",
            "transport",
            "close",
            "last_ehlo_response",
            "last_helo_response",
            "esmtp_extensions",
            "server_auth_methods",
        },
    }
    for adapter in (_aiosmtpd, _aiosmtplib):
        for owner, names in adapter.UPSTREAM_NAMES.items():
            missing = set(names) - checked[owner]
            assert not missing, f"{adapter.__name__} uses {owner}.{missing} without a check here"


def test_no_other_module_uses_an_upstream_private_name() -> None:
    for path in sorted((ROOT / "smtplab").rglob("*.py")):
        if path.name in ADAPTERS:
            continue
        text = path.read_text()
        used = [name for name in PRIVATE_NAMES if name in text]
        assert not used, f"{path.relative_to(ROOT)} uses {used}: only the adapter modules may"


def test_no_other_test_uses_an_upstream_private_name() -> None:
    pattern = re.compile(r"\.(" + "|".join(re.escape(name) for name in PRIVATE_NAMES) + r")\b")
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == Path(__file__).name:
            continue
        found = pattern.findall(path.read_text())
        assert not found, f"{path.relative_to(ROOT)} uses {found}: test the adapters' behaviour instead"
