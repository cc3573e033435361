"""A record of one SMTP dialogue: who said what, when, and whether inside TLS.

A :class:`Transcript` is a list of :class:`Line` objects, appended from any thread
(the lab server records from its own thread while a notebook reads). It renders as
plain text with swaks-style markers, as an HTML table for Jupyter and as a Mermaid
sequence diagram::

    >>> t = Transcript(title="demo")
    >>> _ = t.client("EHLO lab")
    >>> _ = t.server("250 smtplab.local")
    >>> print(t.text(annotate=False))
    -> EHLO lab
    <- 250 smtplab.local

Markers: ``->`` client, ``<-`` server, ``~>`` / ``<~`` the same inside TLS, ``**`` an
event that is not on the wire (connected, TLS started, connection closed, ...).

AUTH secrets are recognised here, and only here, and every rendering masks them as
``********`` unless ``reveal_secrets=True`` is passed on purpose.

The module is pure: no I/O and no asyncio.
"""

from __future__ import annotations

import heapq
import html as _html
import re
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, overload

from smtplab.protocol import explain

__all__ = ["MASK", "Line", "Transcript", "TranscriptPair", "format_address"]

MASK = "********"
"""What a secret looks like in every rendering unless ``reveal_secrets=True``."""

SENDERS = ("client", "server", "event")

Observer = Callable[["Line"], object]

_DISPLAY_LIMIT = 200  # characters of one line shown in html() and mermaid()
_ELLIPSIS = "\u2026"
_ANNOTATE_COLUMN = 60  # text(): meanings line up at this column at most
_MAX_CALLBACK_ERRORS = 100

# A reply line starts with a three-digit code, then a space, a hyphen (more lines
# follow) or nothing (RFC 5321 §4.2 and §4.2.1; the first digit is 2 to 5).
_REPLY_RE = re.compile(r"([2-5][0-9]{2})(?:[ -]|\Z)")
# "AUTH <mechanism> <initial-response>" (RFC 4954 §4): the secret starts at the response.
_AUTH_INITIAL_RE = re.compile(r"[ \t]*AUTH[ \t]+[^ \t]+[ \t]+(?=[^ \t])", re.IGNORECASE)
# Lone surrogates come from invalid UTF-8 decoded with "surrogateescape"; they cannot
# be encoded, so display forms show U+FFFD instead.
_SURROGATES_RE = re.compile("[\ud800-\udfff]")
# Control characters become visible Unicode "control pictures" (CR -> U+240D, ...), so
# one Line stays one displayed line and a bare LF is there to see. Tab stays a tab.
_CONTROL_PICTURES = {i: 0x2400 + i for i in range(32) if i != 9}
_CONTROL_PICTURES[0x7F] = 0x2421


# --------------------------------------------------------------------------- helpers


def _json_safe(text: str) -> str:
    """Replace lone surrogates with U+FFFD so the text can be encoded and serialised."""
    if text.isascii():
        return text
    return _SURROGATES_RE.sub("\ufffd", text)


def _display(text: str) -> str:
    """Make text safe to print: no lone surrogates, control characters made visible."""
    return _json_safe(text).translate(_CONTROL_PICTURES)


def _reply_code(text: str) -> int | None:
    match = _REPLY_RE.match(text)
    return int(match.group(1)) if match else None


def _is_last_reply_line(line: Line) -> bool:
    """True for a reply line that ends its reply ("250 ..." but not "250-...")."""
    return line.code is not None and line.text[3:4] != "-"


def _shown(line: Line, reveal_secrets: bool) -> str:
    return line.text if reveal_secrets else line.masked


def _segments(line: Line, reveal_secrets: bool) -> list[tuple[str, str]]:
    """Split a line for display into (text, kind) parts; kind is "", "masked" or "revealed"."""
    text = _display(line.text)
    if line.secret_from is None:
        return [(text, "")]
    # _display() keeps the length (one code point in, one out), so the index still holds.
    head, secret = text[: line.secret_from], text[line.secret_from :]
    parts = [(head, "")] if head else []
    parts.append((secret, "revealed") if reveal_secrets else (MASK, "masked"))
    return parts


def _truncate_segments(
    parts: list[tuple[str, str]], limit: int = _DISPLAY_LIMIT
) -> tuple[list[tuple[str, str]], bool]:
    out: list[tuple[str, str]] = []
    left = limit
    for text, kind in parts:
        if len(text) > left:
            if left:
                out.append((text[:left], kind))
            return out, True
        out.append((text, kind))
        left -= len(text)
    return out, False


def _truncate(text: str, limit: int = _DISPLAY_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + _ELLIPSIS


def format_address(address: tuple[Any, ...] | str | None) -> str:
    """A socket address for people: ``host:port``, ``[::1]:port`` for IPv6, a Unix socket's path.

    An unnamed Unix-socket end (``""``) reads "a local socket"; no address at all reads "?".
    """
    if isinstance(address, str):
        return address or "a local socket"
    if not address:
        return "?"
    host, *rest = tuple(address)
    host = f"[{host}]" if ":" in str(host) else str(host)
    return f"{host}:{rest[0]}" if rest else host


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _render_text(
    rows: Iterable[tuple[str, Line]], *, reveal_secrets: bool, annotate: bool, times: bool
) -> str:
    """One output line per (label, Line); meanings of final reply lines after ``#``."""
    rows = list(rows)
    if not rows:
        return ""
    start = min(line.time for _, line in rows)
    bodies: list[tuple[str, str]] = []
    for label, line in rows:
        prefix = f"{f'+{line.time - start:.3f}s':>9} " if times else ""
        body = f"{prefix}{label}{line.marker} {_display(_shown(line, reveal_secrets))}"
        note = _display(line.meaning) if annotate and _is_last_reply_line(line) else ""
        bodies.append((body, note))
    width = min(max((len(body) for body, note in bodies if note), default=0), _ANNOTATE_COLUMN)
    return "\n".join(f"{body.ljust(width)}   # {note}" if note else body for body, note in bodies)


# --------------------------------------------------------------------------- HTML

# Semi-transparent colours read well on both light and dark JupyterLab themes;
# the text colour is inherited from the theme.
_ROW_BACKGROUND = {
    "client": "rgba(66, 133, 244, 0.13)",
    "server": "rgba(52, 168, 83, 0.13)",
    "event": "rgba(128, 128, 128, 0.10)",
}
_ROW_EDGE = {
    "client": "rgba(66, 133, 244, 0.75)",
    "server": "rgba(52, 168, 83, 0.75)",
    "event": "rgba(128, 128, 128, 0.55)",
}
_LOCK = "\U0001f512"
# JupyterLab's rendered-HTML stylesheet right-aligns cells, pads them and fixes the
# table layout; inline styles put things back.
_TD = (
    "text-align:left;vertical-align:top;padding:1px 6px;border:none;"
    "line-height:1.35;color:inherit;max-width:none"
)
_TABLE = (
    "border-collapse:collapse;border:none;margin:0;table-layout:auto;width:auto;"
    "font-family:var(--jp-code-font-family, monospace);font-size:12px"
)
_MEANING_STYLE = "font-family:var(--jp-ui-font-family, sans-serif);opacity:0.75;white-space:normal"


def _e(text: str) -> str:
    return _html.escape(_display(text), quote=True)


def _attr(name: str, value: str) -> str:
    return f' {name}="{_e(value)}"' if value else ""


def _html_text(line: Line, reveal_secrets: bool) -> tuple[str, str]:
    """The escaped line text as HTML, and a note when it was shortened."""
    parts, truncated = _truncate_segments(_segments(line, reveal_secrets))
    pieces = []
    for text, kind in parts:
        if kind == "masked":
            pieces.append(
                '<span style="opacity:0.7" title="secret hidden: pass reveal_secrets=True '
                f'to show it">{_e(text)}</span>'
            )
        elif kind == "revealed":
            pieces.append(
                '<span style="text-decoration:underline dotted" '
                f'title="secret, shown because reveal_secrets=True">{_e(text)}</span>'
            )
        else:
            pieces.append(_e(text))
    note = ""
    if truncated:
        pieces.append(_ELLIPSIS)
        note = f"{len(line.text)} characters; the first {_DISPLAY_LIMIT} are shown"
    return "".join(pieces), note


def _html_marker_cells(line: Line, start: float) -> str:
    lock = _LOCK if line.tls and line.sender != "event" else ""
    lock_title = "inside TLS" if lock else ""
    when = _time.strftime("%H:%M:%S", _time.localtime(line.time))
    when += f".{int(line.time * 1000) % 1000:03d} (+{line.time - start:.3f} s)"
    return (
        f'<td style="{_TD};padding-right:0;border-left:3px solid {_ROW_EDGE[line.sender]}"'
        f"{_attr('title', lock_title)}>{lock}</td>"
        f'<td style="{_TD};white-space:nowrap;opacity:0.8"{_attr("title", when)}>'
        f"{_e(line.marker)}</td>"
    )


def _html_line_cell(line: Line, reveal_secrets: bool, *, meaning: str) -> str:
    body, note = _html_text(line, reveal_secrets)
    title = " \u2014 ".join(part for part in (meaning, note) if part)
    style = f"{_TD};white-space:pre-wrap;word-break:break-all"
    if line.sender == "event":
        style += ";font-style:italic;opacity:0.85"
    return f'<td style="{style}"{_attr("title", title)}>{body}</td>'


def _html_meaning_cell(line: Line | None) -> str:
    text = line.meaning if line is not None and _is_last_reply_line(line) else ""
    return f'<td style="{_TD};{_MEANING_STYLE}"{_attr("title", text)}>{_e(text)}</td>'


def _html_frame(caption: str, header: str, rows: list[str], columns: int) -> str:
    if not rows:
        rows = [f'<tr><td style="{_TD};opacity:0.7" colspan="{columns}">(no lines yet)</td></tr>']
    return (
        '<div class="smtplab-transcript" style="max-width:100%;overflow-x:auto">'
        f'<div style="font-size:12px;margin:0 0 4px 0;opacity:0.85">{caption}</div>'
        f'<table style="{_TABLE}">{header}<tbody>{"".join(rows)}</tbody></table></div>'
    )


def _html_caption(title: str, details: list[str], hidden: int) -> str:
    parts = [f"<b>{_e(title)}</b>"] if title else []
    parts += [_e(detail) for detail in details if detail]
    if hidden:
        parts.append(_e(f"{_plural(hidden, 'secret')} hidden (reveal_secrets=True shows them)"))
    parts.append(_e(f"-> client, <- server, ~> <~ inside TLS {_LOCK}, ** event"))
    return " \u00b7 ".join(parts)


# --------------------------------------------------------------------------- Mermaid

# Mermaid reads "#name;" / "#123;" as character entities: write troublesome characters
# that way. str.translate() replaces in one pass, so a "#" already in the text is safe.
_MERMAID_ESCAPES = {
    "#": "#35;",
    ";": "#59;",
    '"': "#34;",
    "'": "#39;",
    "`": "#96;",
    "<": "#60;",
    ">": "#62;",
    "&": "#38;",
    "%": "#37;",
}
_MERMAID_TABLE = str.maketrans(_MERMAID_ESCAPES)


def _mermaid_text(line: Line, reveal_secrets: bool, suffix: str = "") -> str:
    text = _truncate(_display(_shown(line, reveal_secrets)))
    if not text.strip():
        text = "(empty line)"
    return (text + suffix).translate(_MERMAID_TABLE)


def _mermaid_arrow(line: Line, text: str, *, where: str = "over Client,Server") -> str:
    if line.sender == "client":
        return f"    Client->>Server: {text}"
    if line.sender == "server":
        return f"    Server-->>Client: {text}"
    return f"    Note {where}: {text}"


def _mermaid_tls_note(tls: bool) -> str:
    return f"    Note over Client,Server: {'TLS starts' if tls else 'TLS ends'}"


_MERMAID_HEAD = ["sequenceDiagram", "    participant Client", "    participant Server"]


# --------------------------------------------------------------------------- Line


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
    """

    sender: str
    text: str
    time: float = field(default_factory=_time.time)
    tls: bool = False
    secret_from: int | None = None

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
        return _reply_code(self.text) if self.sender == "server" else None

    @property
    def meaning(self) -> str:
        """What a server reply line means (``smtplab.protocol.explain``), "" otherwise."""
        if self.code is None:
            return ""
        return explain(_json_safe(self.text))

    @property
    def marker(self) -> str:
        """The swaks-style marker: ``->`` / ``~>`` client, ``<-`` / ``<~`` server, ``**`` event."""
        if self.sender == "client":
            return "~>" if self.tls else "->"
        if self.sender == "server":
            return "<~" if self.tls else "<-"
        return "**"

    def __str__(self) -> str:
        return f"{self.marker} {_display(self.masked)}"

    def __repr__(self) -> str:
        # Never shows a secret: repr() ends up in logs and tracebacks.
        return (
            f"Line(sender={self.sender!r}, text={self.masked!r}, time={self.time!r}, "
            f"tls={self.tls!r}, secret_from={self.secret_from!r})"
        )


# --------------------------------------------------------------------------- Transcript


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
        self._observers: tuple[Observer, ...] = ()
        self._after_334 = False

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

    def _append(self, sender: str, text: str, tls: bool) -> Line:
        if isinstance(text, (bytes, bytearray)):
            raise TypeError("text must be str; decode bytes with .decode('utf-8', 'surrogateescape')")
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        if text.endswith("\r\n"):
            text = text[:-2]
        with self._lock:
            secret_from = None
            if sender == "client":
                secret_from = self._secret_start(text)
                self._after_334 = False
            elif sender == "server":
                self._after_334 = _reply_code(text) == 334
            line = Line(sender, text, _time.time(), bool(tls), secret_from)
            self._lines.append(line)
            observers = self._observers
        for callback in observers:
            try:
                callback(line)
            except Exception as exc:  # noqa: BLE001 - an observer must never break the appender
                with self._lock:
                    if len(self.callback_errors) < _MAX_CALLBACK_ERRORS:
                        self.callback_errors.append(exc)
        return line

    def _secret_start(self, text: str) -> int | None:
        """Where the secret starts in a client line, given the line before it."""
        if self._after_334:
            # RFC 4954 §4: after a 334 the client's whole line is its response
            # (base64 credentials); a lone "*" cancels the exchange.
            return None if text.strip() == "*" else 0
        # RFC 4954 §4: an initial response follows the mechanism name.
        match = _AUTH_INITIAL_RE.match(text)
        return match.end() if match else None

    def clear(self) -> None:
        """Forget every line (observers stay registered)."""
        with self._lock:
            self._lines.clear()
            self._after_334 = False

    # ------------------------------------------------------------------ observers

    def observe(self, callback: Observer) -> Observer:
        """Call ``callback(line)`` after each append, from the appending thread.

        Returns the callback, so this also works as a decorator. Registering the same
        callback twice has no extra effect.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._lock:
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
            return list(self._lines)

    @property
    def replies(self) -> list[Line]:
        """The server lines that carry a reply code (each physical line of a reply)."""
        return [line for line in self.lines if line.code is not None]

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines)

    def __iter__(self) -> Iterator[Line]:
        return iter(self.lines)

    @overload
    def __getitem__(self, index: int) -> Line: ...

    @overload
    def __getitem__(self, index: slice) -> list[Line]: ...

    def __getitem__(self, index: int | slice) -> Line | list[Line]:
        with self._lock:
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
        return _render_text(
            (("", line) for line in self.lines),
            reveal_secrets=reveal_secrets,
            annotate=annotate,
            times=times,
        )

    def html(self, *, reveal_secrets: bool = False) -> str:
        """The dialogue as an HTML table: colour by sender, a lock on TLS lines, meanings."""
        lines = self.lines
        start = lines[0].time if lines else 0.0
        rows = []
        for line in lines:
            meaning = line.meaning
            rows.append(
                f'<tr style="background-color:{_ROW_BACKGROUND[line.sender]}">'
                f"{_html_marker_cells(line, start)}"
                f"{_html_line_cell(line, reveal_secrets, meaning=meaning)}"
                f"{_html_meaning_cell(line)}</tr>"
            )
        details = [_address_detail(self.local, self.peer), self._counts(lines)]
        hidden = 0 if reveal_secrets else sum(line.secret_from is not None for line in lines)
        return _html_frame(_html_caption(self.title, details, hidden), "", rows, 4)

    def _repr_html_(self) -> str:
        return self.html()

    def mermaid(self, *, reveal_secrets: bool = False) -> str:
        """The dialogue as a Mermaid ``sequenceDiagram`` (paste it into a Markdown cell)."""
        out = list(_MERMAID_HEAD)
        tls = False
        for line in self.lines:
            if line.sender != "event" and line.tls != tls:
                tls = line.tls
                out.append(_mermaid_tls_note(tls))
            out.append(_mermaid_arrow(line, _mermaid_text(line, reveal_secrets)))
        return "\n".join(out)

    def to_dicts(self, *, reveal_secrets: bool = False) -> list[dict[str, Any]]:
        """The lines as JSON-safe dicts (secrets masked, lone surrogates replaced)."""
        return [
            {
                "sender": line.sender,
                "marker": line.marker,
                "text": _json_safe(_shown(line, reveal_secrets)),
                "time": line.time,
                "tls": line.tls,
                "secret": line.secret_from is not None,
                "code": line.code,
                "meaning": _json_safe(line.meaning),
            }
            for line in self.lines
        ]

    @staticmethod
    def pair(client: Transcript, server: Transcript) -> TranscriptPair:
        """Show the client's and the server's records of one session side by side."""
        return TranscriptPair(client, server)

    def _counts(self, lines: list[Line]) -> str:
        replies = sum(line.code is not None for line in lines)
        return f"{_plural(len(lines), 'line')}, {replies} {'reply' if replies == 1 else 'replies'}"

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        title = f" {_json_safe(self.title)!r}" if self.title else ""
        return f"<Transcript{title} {self._counts(self.lines)}>"


def _address_detail(local: tuple[Any, ...] | str | None, peer: tuple[Any, ...] | str | None) -> str:
    if local and peer:
        return f"{format_address(local)} \u21c4 {format_address(peer)}"
    if peer:
        return f"peer {format_address(peer)}"
    if local:
        return f"local {format_address(local)}"
    return ""


# --------------------------------------------------------------------------- pair

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
        return _render_text(
            (
                (labels[(mine is not None, theirs is not None)], _row_line((mine, theirs)))
                for mine, theirs in self._rows()
            ),
            reveal_secrets=reveal_secrets,
            annotate=annotate,
            times=times,
        )

    def html(self, *, reveal_secrets: bool = False) -> str:
        """An HTML table with the client's record and the server's record in two columns."""
        rows_data = self._rows()
        start = min((_row_line(row).time for row in rows_data), default=0.0)
        rows = []
        for row in rows_data:
            line = _row_line(row)
            meaning = line.meaning
            cells = []
            for side in row:
                if side is None:
                    cells.append(f'<td style="{_TD}"></td>')
                else:
                    cells.append(_html_line_cell(side, reveal_secrets, meaning=meaning))
            rows.append(
                f'<tr style="background-color:{_ROW_BACKGROUND[line.sender]}">'
                f"{_html_marker_cells(line, start)}{''.join(cells)}"
                f"{_html_meaning_cell(line)}</tr>"
            )
        th = f"{_TD};font-weight:bold;opacity:0.8"
        header = (
            f'<thead><tr><th style="{th}"></th><th style="{th}"></th>'
            f'<th style="{th}">{_e(_side_title("client", self.client))}</th>'
            f'<th style="{th}">{_e(_side_title("server", self.server))}</th>'
            f'<th style="{th}">meaning</th></tr></thead>'
        )
        hidden = 0
        if not reveal_secrets:
            hidden = sum(
                side is not None and side.secret_from is not None for row in rows_data for side in row
            )
        details = [
            f"client: {self.client._counts(self.client.lines)}",
            f"server: {self.server._counts(self.server.lines)}",
        ]
        return _html_frame(_html_caption("", details, hidden), header, rows, 5)

    def _repr_html_(self) -> str:
        return self.html()

    def mermaid(self, *, reveal_secrets: bool = False) -> str:
        """One sequence diagram in the client's wire order; one-sided lines are marked."""
        out = list(_MERMAID_HEAD)
        tls = False
        for mine, theirs in self._rows():
            line = _row_line((mine, theirs))
            if line.sender != "event" and line.tls != tls:
                tls = line.tls
                out.append(_mermaid_tls_note(tls))
            if line.sender == "event":
                where = {
                    (True, True): "over Client,Server",
                    (True, False): "left of Client",
                    (False, True): "right of Server",
                }[(mine is not None, theirs is not None)]
                out.append(_mermaid_arrow(line, _mermaid_text(line, reveal_secrets), where=where))
                continue
            suffix = ""
            if theirs is None:
                suffix = " [only in the client record]"
            elif mine is None:
                suffix = " [only in the server record]"
            out.append(_mermaid_arrow(line, _mermaid_text(line, reveal_secrets, suffix)))
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return (
            f"<TranscriptPair client: {self.client._counts(self.client.lines)}; "
            f"server: {self.server._counts(self.server.lines)}>"
        )


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
