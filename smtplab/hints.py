"""Fixes as data: what to change, said in the words of whoever reads the message.

An error that teaches names the change that fixes it. Someone writing Python needs
``tls='starttls'`` or ``port=0``; someone at a terminal running ``smtplab send`` needs
``--tls starttls`` or ``--port``. So a message that suggests a fix is a :class:`Hint`: text with
:class:`Fix` parts, each spelled for an *audience* — ``"python"`` (the library, notebooks) or
``"cli"`` (the command line) — only when the message is shown::

    >>> hint = Hint("On this port use ", option("tls", "starttls"), ".")
    >>> str(hint)  # a Hint is the str of its Python spelling, so it works wherever text does
    "On this port use tls='starttls'."
    >>> hint.render("cli")
    'On this port use --tls starttls.'

An exception carrying a Hint (every :class:`~smtplab.errors.SmtpLabError` can) is shown for an
audience with :func:`render`; ``smtplab`` on the command line prints every error that way.

The spellings live here, in one place: :func:`option` for any option that has the same name in
both (``tls``, ``port``, ``host``, ``cafile``, ``timeout``), and a few named fixes for what the
two say differently (trusting the lab CA, starting a lab server). A test parses every command
line spelling with the real ``smtplab`` parser.

The module is pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AUDIENCES",
    "Audience",
    "Fix",
    "Hint",
    "option",
    "render",
    "start_lab_server",
    "trust_lab_ca",
]

Audience = Literal["python", "cli"]
"""Who reads a message: ``"python"`` (library, notebooks) or ``"cli"`` (``smtplab`` commands)."""

AUDIENCES: tuple[Audience, ...] = ("python", "cli")


@dataclass(frozen=True)
class Fix:
    """A part of a message that each audience reads differently: an option, a command, a step.

    Attributes:
        python: The words for someone writing Python, e.g. ``"tls='starttls'"``.
        cli: The words for someone running ``smtplab`` in a terminal, e.g. ``"--tls starttls"``;
            ``""`` when there is nothing to do from there (the part is left out).
    """

    python: str
    cli: str

    def spell(self, audience: Audience) -> str:
        """The words for ``audience``."""
        return self.cli if audience == "cli" else self.python

    def __format__(self, spec: str) -> str:
        raise TypeError(
            "a Fix is spelled when its message is shown: pass it to Hint(...) as a part, "
            "not inside an f-string"
        )


class Hint(str):
    """A message with :class:`Fix` parts; as a ``str`` it is the Python spelling.

    Args:
        *parts: Text, and :class:`Fix` parts where the words depend on the reader.
    """

    parts: tuple[str | Fix, ...]

    def __new__(cls, *parts: str | Fix) -> Hint:
        hint = super().__new__(cls, _join(parts, "python"))
        hint.parts = parts
        return hint

    def render(self, audience: Audience = "python") -> str:
        """The message for ``audience`` (``"python"`` or ``"cli"``)."""
        return _join(self.parts, audience)

    def __getnewargs__(self) -> tuple[str]:  # pickling: the parts come back with __dict__
        return (str(self),)


def _join(parts: tuple[str | Fix, ...], audience: Audience) -> str:
    spelled = [part.spell(audience) if isinstance(part, Fix) else part for part in parts]
    text = "".join(spelled)
    if any(isinstance(part, Fix) and not words for part, words in zip(parts, spelled, strict=True)):
        # A part left out for this audience must not leave a double space or a space before a stop.
        while "  " in text:
            text = text.replace("  ", " ")
        text = text.replace(" .", ".").replace(" ,", ",").strip()
    return text


def render(message: object, audience: Audience = "python") -> str:
    """A message, or an exception's message, in the words of ``audience``.

    Args:
        message: A :class:`Hint`, any other text, or an exception carrying a :class:`Hint` (as
            its ``hint`` attribute or its first argument).
        audience: ``"python"`` or ``"cli"``.
    """
    text = message
    if isinstance(message, BaseException):
        text = getattr(message, "hint", None) or (message.args[0] if message.args else None)
    if isinstance(text, Hint):
        return text.render(audience)
    return str(message)


# -- the spellings --------------------------------------------------------------------------------


def option(name: str, value: object) -> Fix:
    """An option both faces share: ``name=value`` in Python, ``--name value`` on the command line.

    ``tls=None`` (plain text) is "no --tls option" there: plain text is leaving ``--tls`` out.
    """
    flag = "--" + name.replace("_", "-")
    if value is None:
        return Fix(f"{name}=None", f"no {flag} option")
    return Fix(f"{name}={value!r}", f"{flag} {value}")


#: Where the command line gets the lab CA: ``smtplab serve --cafile PATH`` writes it there.
CLI_LAB_CA = "--cafile ca.pem (the lab CA, which smtplab serve --cafile ca.pem writes)"


def trust_lab_ca(*, default: bool) -> Fix:
    """How to trust a lab server's CA.

    Args:
        default: Whether the server's certificate comes from this process's
            ``default_lab_tls()`` (so that name reaches it); otherwise the lab server object
            or its CA file does.
    """
    if default:
        python = (
            "tls_context=default_lab_tls().client_context() or cafile=default_lab_tls().write_files().ca_cert"
        )
    else:
        python = (
            "smtplab.Client(server, ...), which trusts its lab server's CA, or "
            "tls_context=server.client_context(), or cafile= the ca.pem that "
            "server.lab_tls.write_files() or smtplab serve --cafile ca.pem writes"
        )
    return Fix(python, CLI_LAB_CA)


def start_lab_server(tls: object = None) -> Fix:
    """Starting a lab server, with TLS if ``tls`` is given."""
    if tls is None:
        return Fix("smtplab.start_server()", "smtplab serve")
    return Fix(f"smtplab.start_server(tls={tls!r})", f"smtplab serve --tls {tls}")
