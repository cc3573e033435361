"""A record of one SMTP dialogue: who said what, when, and whether inside TLS.

A :class:`Transcript` is a list of :class:`Line` objects, appended from any thread (the lab
server records from its own thread while a notebook reads). It renders (through
:mod:`smtplab.render`) as plain text with swaks-style markers, as an HTML table for Jupyter and
as a Mermaid sequence diagram::

    >>> t = Transcript(title="demo")
    >>> _ = t.client("EHLO lab")
    >>> _ = t.server("250 smtplab.local")
    >>> print(t.text(annotate=False))
    -> EHLO lab
    <- 250 smtplab.local

Markers: ``->`` client, ``<-`` server, ``~>`` / ``<~`` the same inside TLS, ``**`` an event
that is not on the wire (connected, TLS started, connection closed, ...).

AUTH secrets are recognised here, and only here (:func:`secret_start`, used by the client's
replies too), and every rendering masks them as ``********`` unless ``reveal_secrets=True`` is
passed on purpose.

Recording is cheap on purpose: a recorded line is kept as its text, its time and one byte for
sender and TLS, in three flat arrays that the garbage collector never has to walk; it becomes a
:class:`Line` (with its secret found) only when someone reads the transcript or observes it.

The module is pure: no I/O and no asyncio (``save()`` hands the writing to :mod:`smtplab.export`).
"""

from __future__ import annotations

import collections
import heapq
import os
import re
import threading
import time as _time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from smtplab.protocol import answered_verb, explain, reply_code

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

__all__ = ["MASK", "Line", "Transcript", "TranscriptPair", "masked", "secret_start"]

MASK = "********"
"""What a secret looks like in every rendering unless ``reveal_secrets=True``."""

SENDERS = ("client", "server", "event")
_KIND = {"client": 0, "server": 1, "event": 2}  # a recorded line's byte: sender, +4 inside TLS

Observer = Callable[["Line"], object]

_MAX_CALLBACK_ERRORS = 100

# "AUTH <mechanism> <initial-response>" (RFC 4954 §4): the secret starts at the response.
_AUTH_INITIAL_RE = re.compile(r"[ \t]*AUTH[ \t]+[^ \t]+[ \t]+(?=[^ \t])", re.IGNORECASE)


def _render() -> ModuleType:
    """:mod:`smtplab.render`, imported when first needed: recording never needs it."""
    from smtplab import render

    return render


# -- the masking rule ----------------------------------------------------------------------------


def secret_start(text: str, *, after_334: bool) -> int | None:
    """Where the secret starts in a line the client sent, or ``None`` if it holds none.

    The one masking rule of smtplab (transcripts, renderings and the client's replies use it):

    * after a ``334`` challenge the client's whole line is its SASL response — base64
      credentials (RFC 4954 §4) — except a lone ``*``, which cancels the exchange;
    * ``AUTH <mechanism> <initial-response>`` carries its secret after the mechanism name.

    Args:
        text: The client's line, without CRLF.
        after_334: Whether the server's last reply was a ``334`` challenge.
    """
    if after_334:
        return None if text.strip() == "*" else 0
    if text[:4].upper() != "AUTH" and not text[:1].isspace():
        return None  # most lines: no AUTH, no need for the expression
    match = _AUTH_INITIAL_RE.match(text)
    return match.end() if match else None


def masked(text: str, *, after_334: bool) -> str:
    """``text`` with its secret, if any (see :func:`secret_start`), replaced by ``********``."""
    start = secret_start(text, after_334=after_334)
    return text if start is None else text[:start] + MASK


# -- Line ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Line:
    """One line of an SMTP dialogue, or an event beside it.

    Attributes:
        sender: ``"client"``, ``"server"`` or ``"event"`` (not on the wire: "connected to
            ...", "TLS started: TLSv1.3 ...", "connection closed", ...).
        text: The line as sent, without its CRLF. May contain a secret.
        time: ``time.time()`` when the line was recorded.
        tls: Whether the line travelled inside TLS.
        secret_from: Index in ``text`` where secret content starts, or None.
        answers: For a reply line, the command it answers (:func:`smtplab.protocol.answered_verb`):
            ``""`` for the greeting, ``"."`` for the end of message data, ``"AUTH"`` within an
            AUTH exchange; ``None`` when unknown. Its :attr:`meaning` depends on it.
    """

    sender: str
    text: str
    time: float = field(default_factory=_time.time)
    tls: bool = False
    secret_from: int | None = None
    answers: str | None = None

    def __post_init__(self) -> None:
        if self.sender not in SENDERS:
            raise ValueError(f"sender must be one of {SENDERS}, not {self.sender!r}")
        if not isinstance(self.text, str):
            raise TypeError(f"text must be str, not {type(self.text).__name__}")
        if self.secret_from is not None and not 0 <= self.secret_from <= len(self.text):
            raise ValueError(f"secret_from={self.secret_from} is outside the text (length {len(self.text)})")

    @property
    def masked(self) -> str:
        """The text with its secret part, if any, replaced by ``********``."""
        if self.secret_from is None:
            return self.text
        return self.text[: self.secret_from] + MASK

    @property
    def code(self) -> int | None:
        """The reply code of a server reply line (``250`` for "250-SIZE 100"), else None."""
        return reply_code(self.text) if self.sender == "server" else None

    @property
    def meaning(self) -> str:
        """What a server reply line means in answer to its command (``smtplab.protocol.explain``)."""
        if self.code is None:
            return ""
        return explain(_render().json_safe(self.text), command=self.answers, tls=self.tls)

    @property
    def marker(self) -> str:
        """The swaks-style marker: ``->`` / ``~>`` client, ``<-`` / ``<~`` server, ``**`` event."""
        if self.sender == "client":
            return "~>" if self.tls else "->"
        if self.sender == "server":
            return "<~" if self.tls else "<-"
        return "**"

    def __str__(self) -> str:
        return f"{self.marker} {_render().display(self.masked)}"

    def __repr__(self) -> str:
        # Never shows a secret: repr() ends up in logs and tracebacks.
        return (
            f"Line(sender={self.sender!r}, text={self.masked!r}, time={self.time!r}, "
            f"tls={self.tls!r}, secret_from={self.secret_from!r})"
        )


# -- Transcript ----------------------------------------------------------------------------------


class Transcript:
    """The record of one SMTP dialogue, as one side saw it.

    Appending is thread-safe; readers get snapshots. Observers are called after each
    append, in the appending thread; an observer that raises never disturbs the
    appender: its exception is kept on :attr:`callback_errors` instead.

    Args:
        title: A name shown by the renderings, e.g. ``"client"`` or ``"server"``.
        peer: The address of the other end, e.g. ``("127.0.0.1", 2525)``, or a Unix socket's path.
        local: The address of this end.

    Attributes:
        callback_errors: Exceptions raised by observers (the first 100 are kept).
    """

    def __init__(
        self,
        *,
        title: str = "",
        peer: tuple[Any, ...] | str | None = None,
        local: tuple[Any, ...] | str | None = None,
    ) -> None:
        self.title = title
        # A Unix-domain socket's address is a path (a str): keep it whole.
        self.peer = peer if peer is None or isinstance(peer, str) else tuple(peer)
        self.local = local if local is None or isinstance(local, str) else tuple(local)
        self.callback_errors: list[Exception] = []
        self._lock = threading.Lock()
        self._lines: list[Line] = []
        # Recorded but not yet read, in three flat arrays (no object per line for the garbage
        # collector to walk): the text (or raw bytes of a line as read), the time, and one byte
        # for sender and TLS. Made into Lines in order, when read, so the secret of each client
        # line is found from the line before it.
        self._texts: list[str | bytes] = []
        self._times = array("d")
        self._kinds = bytearray()
        self._answers: list[str | None] = []  # the command a server line answers, when told
        self._observers: tuple[Observer, ...] = ()
        self._after_334 = False
        # Commands still waiting for their reply, oldest first; the greeting answers "no command".
        self._awaiting: collections.deque[str] = collections.deque([""])
        self._last_verb = ""

    # ------------------------------------------------------------------ recording

    def client(self, text: str, *, tls: bool = False) -> Line:
        """Record a line the client sent. AUTH secrets in it are recognised and masked."""
        return self._append("client", text, tls)

    def server(self, text: str, *, tls: bool = False) -> Line:
        """Record a line the server sent (one physical line of a reply)."""
        return self._append("server", text, tls)

    def event(self, text: str, *, tls: bool = False) -> Line:
        """Record something that is not on the wire: connected, TLS started, closed, ..."""
        return self._append("event", text, tls)

    def message_data(self, lines: int, size: int, *, tls: bool = False) -> None:
        """Record message content by its size, then the ``.`` that ended it (RFC 5321 §4.1.1.4).

        Both ends record a message this way rather than line by line: the content is in the
        mailbox, and a transcript of thousands of body lines would hide the dialogue.

        Args:
            lines: Lines of content, as sent (dot-stuffed).
            size: Bytes of content, as sent, line endings included.
            tls: Whether it travelled inside TLS.
        """
        self.record("event", f"message data: {_render().plural(lines, 'line')}, {size} bytes", tls)
        self.record("client", ".", tls)

    def _append(self, sender: str, text: str, tls: bool) -> Line:
        if isinstance(text, (bytes, bytearray)):
            raise TypeError("text must be str; decode bytes with .decode('utf-8', 'surrogateescape')")
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        if sender not in SENDERS:
            raise ValueError(f"sender must be one of {SENDERS}, not {sender!r}")
        if text.endswith("\r\n"):
            text = text[:-2]
        with self._lock:
            self._texts.append(text)
            self._times.append(_time.time())
            self._kinds.append(_KIND[sender] + (4 if tls else 0))
            self._answers.append(None)
            new = self._materialize()
            observers = self._observers
        self._notify(new, observers)
        return new[-1]

    def record(self, sender: str, text: str | bytes, tls: bool, answers: str | None = None) -> None:
        """Record a line as cheaply as possible (for smtplab's own recorders, on the wire's path).

        Args:
            sender: ``"client"``, ``"server"`` or ``"event"`` (not checked).
            text: The line without CRLF, or the raw bytes of a line as read (decoded with
                ``surrogateescape`` and stripped of CR/LF when first read).
            tls: Whether it travelled inside TLS.
            answers: For a server line, the command it answers (see :attr:`Line.answers`), when
                the recorder knows; otherwise it is worked out from the lines before it (each
                reply answers the oldest command still waiting for one; the first, no command).
        """
        kind = _KIND[sender] + (4 if tls else 0)
        with self._lock:
            self._texts.append(text)
            self._times.append(_time.time())
            self._kinds.append(kind)
            self._answers.append(answers)
            if not self._observers:
                return
            new = self._materialize()
            observers = self._observers
        self._notify(new, observers)

    def _materialize(self) -> list[Line]:
        """Turn pending records into Lines, in order (holding the lock); returns the new ones."""
        new = []
        awaiting = self._awaiting
        for text, when, kind, answers in zip(
            self._texts, self._times, self._kinds, self._answers, strict=True
        ):
            sender, tls = SENDERS[kind & 3], kind > 3
            if not isinstance(text, str):
                text = text.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            secret_from = None
            if sender == "client":
                secret_from = secret_start(text, after_334=self._after_334)
                self._last_verb = answered_verb(text, after_334=self._after_334)
                awaiting.append(self._last_verb)
                self._after_334 = False
            elif sender == "server":
                code = reply_code(text)
                if code is not None:
                    if answers is None:
                        answers = awaiting[0] if awaiting else self._last_verb
                    if text[3:4] != "-" and awaiting:  # the reply's last line
                        awaiting.popleft()
                self._after_334 = code == 334
            new.append(Line(sender, text, when, tls, secret_from, answers if sender == "server" else None))
        self._lines.extend(new)
        del self._texts[:], self._times[:], self._kinds[:], self._answers[:]
        return new

    def _notify(self, new: list[Line], observers: tuple[Observer, ...]) -> None:
        for line in new if observers else ():
            for callback in observers:
                try:
                    callback(line)
                except Exception as exc:  # noqa: BLE001 - an observer must never break the appender
                    with self._lock:
                        if len(self.callback_errors) < _MAX_CALLBACK_ERRORS:
                            self.callback_errors.append(exc)

    def clear(self) -> None:
        """Forget every line (observers stay registered)."""
        with self._lock:
            self._lines.clear()
            del self._texts[:], self._times[:], self._kinds[:], self._answers[:]
            self._after_334 = False
            self._awaiting = collections.deque([""])
            self._last_verb = ""

    # ------------------------------------------------------------------ observers

    def observe(self, callback: Observer) -> Observer:
        """Call ``callback(line)`` after each append, from the appending thread.

        Returns the callback, so this also works as a decorator. Registering the same
        callback twice has no extra effect.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._lock:
            self._materialize()  # lines recorded before it are not news to the new observer
            if callback not in self._observers:
                self._observers = (*self._observers, callback)
        return callback

    def unobserve(self, callback: Observer) -> None:
        """Stop calling ``callback``; safe to call for a callback never registered."""
        with self._lock:
            self._observers = tuple(cb for cb in self._observers if cb != callback)

    # ------------------------------------------------------------------ reading

    @property
    def lines(self) -> list[Line]:
        """A snapshot copy of the lines recorded so far."""
        with self._lock:
            if self._texts:
                self._materialize()
            return list(self._lines)

    @property
    def replies(self) -> list[Line]:
        """The server lines that carry a reply code (each physical line of a reply)."""
        return [line for line in self.lines if line.code is not None]

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines) + len(self._texts)

    def __iter__(self) -> Iterator[Line]:
        return iter(self.lines)

    @overload
    def __getitem__(self, index: int) -> Line: ...

    @overload
    def __getitem__(self, index: slice) -> list[Line]: ...

    def __getitem__(self, index: int | slice) -> Line | list[Line]:
        with self._lock:
            if self._texts:
                self._materialize()
            return self._lines[index]

    # ------------------------------------------------------------------ renderings

    def text(self, *, reveal_secrets: bool = False, annotate: bool = True, times: bool = False) -> str:
        """The dialogue as plain text, one line per :class:`Line`.

        Args:
            reveal_secrets: Show AUTH secrets instead of ``********``.
            annotate: Add each reply's meaning after ``#`` on its last line.
            times: Prefix each line with the seconds since the first one.

        Returns:
            Lines such as ``-> EHLO lab`` and ``<~ 235 2.7.0 Authentication successful``;
            long lines are kept whole, control characters shown as symbols.
        """
        rows = (("", line) for line in self.lines)
        return _render().text(rows, reveal_secrets=reveal_secrets, annotate=annotate, times=times)

    def html(self, *, reveal_secrets: bool = False) -> str:
        """The dialogue as an HTML table: colour by sender, "TLS" beside TLS lines, meanings."""
        lines = self.lines
        start = lines[0].time if lines else 0.0
        rows = [_render().html_row(line, reveal_secrets=reveal_secrets, start=start) for line in lines]
        hidden = 0 if reveal_secrets else sum(line.secret_from is not None for line in lines)
        details = [_address_detail(self.local, self.peer), _counts(lines)]
        return _render().html_frame(_render().caption(self.title, details, hidden), rows, columns=4)

    def _repr_html_(self) -> str:
        return self.html()

    def mermaid(self, *, reveal_secrets: bool = False) -> str:
        """The dialogue as a Mermaid ``sequenceDiagram`` (paste it into a Markdown cell)."""
        rows = ((line, "", _render().NOTE_BOTH) for line in self.lines)
        return _render().mermaid(rows, reveal_secrets=reveal_secrets)

    def to_dicts(self, *, reveal_secrets: bool = False) -> list[dict[str, Any]]:
        """The lines as JSON-safe dicts (secrets masked, lone surrogates replaced)."""
        return [
            {
                "sender": line.sender,
                "marker": line.marker,
                "text": _render().json_safe(line.text if reveal_secrets else line.masked),
                "time": line.time,
                "tls": line.tls,
                "secret": line.secret_from is not None,
                "code": line.code,
                "meaning": _render().json_safe(line.meaning),
            }
            for line in self.lines
        ]

    def save(self, path: str | os.PathLike[str], *, reveal_secrets: bool = False) -> Path:
        """Write the transcript to a file whose suffix names the form: ``.html``, ``.json``, ``.txt``.

        A web page, data, or plain text (see :mod:`smtplab.export`); secrets masked unless
        ``reveal_secrets=True``. Returns the path written.
        """
        from smtplab.export import save

        return save(self, path, reveal_secrets=reveal_secrets)

    @staticmethod
    def pair(client: Transcript, server: Transcript) -> TranscriptPair:
        """Show the client's and the server's records of one session side by side."""
        return TranscriptPair(client, server)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        title = f" {_render().json_safe(self.title)!r}" if self.title else ""
        return f"<Transcript{title} {_counts(self.lines)}>"


def _counts(lines: list[Line]) -> str:
    replies = sum(line.code is not None for line in lines)
    return f"{_render().plural(len(lines), 'line')}, {replies} {'reply' if replies == 1 else 'replies'}"


def _address_detail(local: tuple[Any, ...] | str | None, peer: tuple[Any, ...] | str | None) -> str:
    if local and peer:
        return f"{_render().format_address(local)} \u21c4 {_render().format_address(peer)}"
    if peer:
        return f"peer {_render().format_address(peer)}"
    if local:
        return f"local {_render().format_address(local)}"
    return ""


# -- pair ----------------------------------------------------------------------------------------

Row = tuple[Line | None, Line | None]


class TranscriptPair:
    """The client's and the server's records of one session, shown together.

    Lines both records hold are matched up (same sender, same text); lines only one side
    saw (events, or a line lost when a connection broke) stand on their own, in time order.

    Args:
        client: The client's transcript.
        server: The server's transcript.
    """

    def __init__(self, client: Transcript, server: Transcript) -> None:
        for name, value in (("client", client), ("server", server)):
            if not isinstance(value, Transcript):
                raise TypeError(f"{name} must be a Transcript, not {type(value).__name__}")
        self.client = client
        self.server = server

    def _rows(self) -> list[Row]:
        """Align the two records; each row holds (client's line, server's line)."""
        ours, theirs = self.client.lines, self.server.lines
        import difflib  # only pairing two records needs it

        matcher = difflib.SequenceMatcher(
            None,
            [(line.sender, line.text) for line in ours],
            [(line.sender, line.text) for line in theirs],
            autojunk=False,
        )
        rows: list[Row] = []
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                rows.extend(zip(ours[i1:i2], theirs[j1:j2], strict=True))
                continue
            # One-sided lines: interleave by time, each record keeping its own order.
            rows.extend(
                heapq.merge(
                    ((line, None) for line in ours[i1:i2]),
                    ((None, line) for line in theirs[j1:j2]),
                    key=lambda row: _row_line(row).time,
                )
            )
        return rows

    def text(self, *, reveal_secrets: bool = False, annotate: bool = True, times: bool = False) -> str:
        """Both records interleaved by time, each line labelled with the record(s) holding it.

        Labels: ``both``, ``client only`` or ``server only``. Arguments as for
        :meth:`Transcript.text`.
        """
        labels = {
            (True, True): "both        ",
            (True, False): "client only ",
            (False, True): "server only ",
        }
        rows = (
            (labels[(mine is not None, theirs is not None)], _row_line((mine, theirs)))
            for mine, theirs in self._rows()
        )
        return _render().text(rows, reveal_secrets=reveal_secrets, annotate=annotate, times=times)

    def html(self, *, reveal_secrets: bool = False) -> str:
        """An HTML table with the client's record and the server's record in two columns."""
        rows = self._rows()
        start = min((_row_line(row).time for row in rows), default=0.0)
        html_rows = [
            _render().html_row(_row_line(row), reveal_secrets=reveal_secrets, start=start, sides=row)
            for row in rows
        ]
        hidden = 0
        if not reveal_secrets:
            hidden = sum(side is not None and side.secret_from is not None for row in rows for side in row)
        details = [f"client: {_counts(self.client.lines)}", f"server: {_counts(self.server.lines)}"]
        header = _render().pair_header(_side_title("client", self.client), _side_title("server", self.server))
        return _render().html_frame(
            _render().caption("", details, hidden), html_rows, columns=5, header=header
        )

    def _repr_html_(self) -> str:
        return self.html()

    def save(self, path: str | os.PathLike[str], *, reveal_secrets: bool = False) -> Path:
        """Write both records to a file whose suffix names the form: ``.html``, ``.json``, ``.txt``.

        As :meth:`Transcript.save`; the JSON holds ``"client"`` and ``"server"``.
        """
        from smtplab.export import save

        return save(self, path, reveal_secrets=reveal_secrets)

    def mermaid(self, *, reveal_secrets: bool = False) -> str:
        """One sequence diagram in the client's wire order; one-sided lines are marked."""
        places = {
            (True, True): _render().NOTE_BOTH,
            (True, False): _render().NOTE_CLIENT,
            (False, True): _render().NOTE_SERVER,
        }
        rows = []
        for mine, theirs in self._rows():
            line = _row_line((mine, theirs))
            suffix = ""
            if line.sender != "event" and theirs is None:
                suffix = " [only in the client record]"
            elif line.sender != "event" and mine is None:
                suffix = " [only in the server record]"
            rows.append((line, suffix, places[(mine is not None, theirs is not None)]))
        return _render().mermaid(rows, reveal_secrets=reveal_secrets)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<TranscriptPair client: {_counts(self.client.lines)}; server: {_counts(self.server.lines)}>"


def _row_line(row: Row) -> Line:
    """The line that speaks for a row: the client's when both records hold it."""
    line = row[0] if row[0] is not None else row[1]
    assert line is not None
    return line


def _side_title(side: str, transcript: Transcript) -> str:
    title = f"{side}'s record"
    if transcript.title and transcript.title != side:
        title += f" ({transcript.title})"
    return title
