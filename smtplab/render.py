"""How a dialogue looks: plain text, HTML and Mermaid renderings of transcript lines.

One renderer for the library and the widgets: ``Transcript.text()`` / ``.html()`` /
``.mermaid()``, ``TranscriptPair`` and :class:`~smtplab.widgets.TranscriptView` all draw their
lines here, so a line looks the same wherever a learner meets it.

Every function takes :class:`~smtplab.transcript.Line` objects (anything with their
attributes) and masks AUTH secrets as ``********`` unless ``reveal_secrets=True``. Control
characters are shown as Unicode "control pictures" (CR as ␍, LF as ␊), so one line stays one
displayed line and a bare LF is there to see; lone surrogates (invalid UTF-8) become U+FFFD.

The module is pure: no I/O, no asyncio, no widgets.
"""

from __future__ import annotations

import html as _html
import re
import time as _time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from smtplab.transcript import MASK

if TYPE_CHECKING:
    from smtplab.transcript import Line

__all__ = [
    "DISPLAY_LIMIT",
    "LEGEND",
    "MASK",
    "TLS_MARK",
    "display",
    "format_address",
    "html_frame",
    "html_row",
    "json_safe",
    "mermaid",
    "plural",
    "text",
]


#: Characters of one line shown in HTML and Mermaid (text keeps lines whole).
DISPLAY_LIMIT = 200

#: The word beside every line that travelled inside TLS. Words, not a lock emoji: meaning is
#: never carried by a glyph alone, which shows as an empty box where no emoji font is installed.
TLS_MARK = "TLS"
LEGEND = f"-> client, <- server, ~> <~ inside TLS (marked {TLS_MARK}), ** event (not on the wire)"

_ELLIPSIS = "\u2026"
_ANNOTATE_COLUMN = 60  # text(): meanings line up at this column at most

# Lone surrogates come from invalid UTF-8 decoded with "surrogateescape"; they cannot be
# encoded, so display forms show U+FFFD instead.
_SURROGATES_RE = re.compile("[\ud800-\udfff]")
# Control characters become visible "control pictures" (CR -> U+240D, ...). Tab stays a tab.
_CONTROL_PICTURES = {i: 0x2400 + i for i in range(32) if i != 9}
_CONTROL_PICTURES[0x7F] = 0x2421


def json_safe(text: str) -> str:
    """Replace lone surrogates with U+FFFD so the text can be encoded and serialised."""
    if text.isascii():
        return text
    return _SURROGATES_RE.sub("\ufffd", text)


def display(text: str) -> str:
    """Make text safe to print: no lone surrogates, control characters made visible."""
    return json_safe(text).translate(_CONTROL_PICTURES)


def plural(count: int, word: str) -> str:
    """``"1 line"``, ``"2 lines"``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


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


def _shown(line: Line, reveal_secrets: bool) -> str:
    return line.text if reveal_secrets else line.masked


def _ends_reply(line: Line) -> bool:
    """True for a reply line that ends its reply ("250 ..." but not "250-...")."""
    return line.code is not None and line.text[3:4] != "-"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + _ELLIPSIS


# -- text -----------------------------------------------------------------------------------------


def text(rows: Iterable[tuple[str, Line]], *, reveal_secrets: bool, annotate: bool, times: bool) -> str:
    """One output line per ``(label, line)``, swaks style; meanings of final reply lines after ``#``."""
    rows = list(rows)
    if not rows:
        return ""
    start = min(line.time for _, line in rows)
    bodies: list[tuple[str, str]] = []
    for label, line in rows:
        prefix = f"{f'+{line.time - start:.3f}s':>9} " if times else ""
        body = f"{prefix}{label}{line.marker} {display(_shown(line, reveal_secrets))}"
        note = display(line.meaning) if annotate and _ends_reply(line) else ""
        bodies.append((body, note))
    width = min(max((len(body) for body, note in bodies if note), default=0), _ANNOTATE_COLUMN)
    return "\n".join(f"{body.ljust(width)}   # {note}" if note else body for body, note in bodies)


# -- HTML -----------------------------------------------------------------------------------------

# Semi-transparent colours read well on both light and dark JupyterLab themes; the text colour
# is inherited from the theme.
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
# JupyterLab's rendered-HTML stylesheet right-aligns cells, pads them and fixes the table
# layout; inline styles put things back.
TD = "text-align:left;vertical-align:top;padding:1px 6px;border:none;line-height:1.35;color:inherit;max-width:none"
TABLE = (
    "border-collapse:collapse;border:none;margin:0;table-layout:auto;width:auto;"
    "font-family:var(--jp-code-font-family, monospace);font-size:12px"
)
_MEANING_STYLE = "font-family:var(--jp-ui-font-family, sans-serif);opacity:0.75;white-space:normal"
#: How the library tells a reader to show secrets (a widget says "tick the box" instead).
REVEAL_HINT = "pass reveal_secrets=True to show it"


def escape(text: str) -> str:
    """HTML-escape display text (quotes too): nothing a line says becomes markup."""
    return _html.escape(display(text), quote=True)


def _attr(name: str, value: str) -> str:
    return f' {name}="{escape(value)}"' if value else ""


def _line_html(line: Line, reveal_secrets: bool, limit: int, reveal_hint: str) -> tuple[str, str]:
    """The escaped line text as HTML (the secret in a span), and a note when it was shortened."""
    shown = display(line.text)  # display() keeps the length, so secret_from still holds
    parts = [(shown, "")]
    if line.secret_from is not None:
        head, secret = shown[: line.secret_from], shown[line.secret_from :]
        parts = [(head, "")] if head else []
        parts.append((secret, "revealed") if reveal_secrets else (MASK, "masked"))
    pieces: list[str] = []
    left, truncated = limit, False
    for piece, kind in parts:
        if len(piece) > left:
            piece, truncated = piece[:left], True
        left -= len(piece)
        body = _html.escape(piece, quote=True)
        if kind == "masked":
            hint = _html.escape(f"secret hidden: {reveal_hint}", quote=True)
            body = f'<span style="opacity:0.7" title="{hint}">{body}</span>'
        elif kind == "revealed":
            body = f'<span style="text-decoration:underline dotted" title="secret, shown on request">{body}</span>'
        if piece or not truncated:
            pieces.append(body)
        if truncated:
            break
    note = ""
    if truncated:
        pieces.append(_ELLIPSIS)
        note = f"{len(line.text)} characters; the first {limit} are shown"
    return "".join(pieces), note


def marker_cells(line: Line, start: float) -> str:
    """The TLS mark (the word) and the direction marker (with the time on hover) of one row."""
    inside = line.tls and line.sender != "event"
    mark = f'<span style="font-size:10px;opacity:0.8">{TLS_MARK}</span>' if inside else ""
    when = _time.strftime("%H:%M:%S", _time.localtime(line.time))
    when += f".{int(line.time * 1000) % 1000:03d} (+{line.time - start:.3f} s)"
    return (
        f'<td style="{TD};padding-right:0;border-left:3px solid {_ROW_EDGE[line.sender]}"'
        f"{_attr('title', 'inside TLS' if inside else '')}>{mark}</td>"
        f'<td style="{TD};white-space:nowrap;opacity:0.8"{_attr("title", when)}>{escape(line.marker)}</td>'
    )


def line_cell(
    line: Line,
    *,
    reveal_secrets: bool,
    meaning: str,
    limit: int = DISPLAY_LIMIT,
    reveal_hint: str = REVEAL_HINT,
) -> str:
    """The cell holding a line's text; its meaning (and any shortening) shows on hover."""
    body, note = _line_html(line, reveal_secrets, limit, reveal_hint)
    title = " \u2014 ".join(part for part in (meaning, note) if part)
    style = f"{TD};white-space:pre-wrap;word-break:break-all"
    if line.sender == "event":
        style += ";font-style:italic;opacity:0.85"
    return f'<td style="{style}"{_attr("title", title)}>{body}</td>'


def meaning_cell(line: Line | None) -> str:
    """The meaning of a final reply line, beside it (empty for other lines)."""
    meaning = line.meaning if line is not None and _ends_reply(line) else ""
    return f'<td style="{TD};{_MEANING_STYLE}"{_attr("title", meaning)}>{escape(meaning)}</td>'


def html_row(
    line: Line,
    *,
    reveal_secrets: bool = False,
    start: float = 0.0,
    limit: int = DISPLAY_LIMIT,
    reveal_hint: str = REVEAL_HINT,
    sides: Sequence[Line | None] | None = None,
) -> str:
    """One table row: TLS mark, marker, the text (one cell per side for a pair), the meaning.

    Args:
        line: The line the row speaks for.
        reveal_secrets: Show AUTH secrets instead of ``********``.
        start: Time of the first line, for the "+0.123 s" hover.
        limit: Characters of the text drawn; the rest is cut with "…" and said on hover.
        reveal_hint: How the reader can show secrets, said on hover over a hidden one.
        sides: For a pair, the line of each record (``None`` where a record lacks it).
    """
    meaning = line.meaning
    cells = "".join(
        line_cell(side, reveal_secrets=reveal_secrets, meaning=meaning, limit=limit, reveal_hint=reveal_hint)
        if side is not None
        else f'<td style="{TD}"></td>'
        for side in (sides if sides is not None else (line,))
    )
    return (
        f'<tr class="smtplab-{line.sender}" style="background-color:{_ROW_BACKGROUND[line.sender]}">'
        f"{marker_cells(line, start)}{cells}{meaning_cell(line)}</tr>"
    )


def caption(title: str, details: Iterable[str], hidden: int) -> str:
    """The line above a table: title, details, how many secrets are hidden, the legend."""
    parts = [f"<b>{escape(title)}</b>"] if title else []
    parts += [escape(detail) for detail in details if detail]
    if hidden:
        parts.append(escape(f"{plural(hidden, 'secret')} hidden (reveal_secrets=True shows them)"))
    parts.append(escape(LEGEND))
    return " \u00b7 ".join(parts)


def html_frame(caption_html: str, rows: Sequence[str], *, columns: int, header: str = "") -> str:
    """A whole table (for ``_repr_html_``), with a placeholder row when there is no line yet."""
    if not rows:
        rows = [f'<tr><td style="{TD};opacity:0.7" colspan="{columns}">(no lines yet)</td></tr>']
    return (
        '<div class="smtplab-transcript" style="max-width:100%;overflow-x:auto">'
        f'<div style="font-size:12px;margin:0 0 4px 0;opacity:0.85">{caption_html}</div>'
        f'<table style="{TABLE}">{header}<tbody>{"".join(rows)}</tbody></table></div>'
    )


def pair_header(client_title: str, server_title: str) -> str:
    """The column titles of a pair's table."""
    th = f"{TD};font-weight:bold;opacity:0.8"
    return (
        f'<thead><tr><th style="{th}"></th><th style="{th}"></th>'
        f'<th style="{th}">{escape(client_title)}</th><th style="{th}">{escape(server_title)}</th>'
        f'<th style="{th}">meaning</th></tr></thead>'
    )


# -- Mermaid --------------------------------------------------------------------------------------

# Mermaid reads "#name;" / "#123;" as character entities: write troublesome characters that
# way. str.translate() replaces in one pass, so a "#" already in the text is safe.
_MERMAID_TABLE = str.maketrans(
    {
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
)
#: Where a Mermaid note goes for an event both records hold, or only one.
NOTE_BOTH, NOTE_CLIENT, NOTE_SERVER = "over Client,Server", "left of Client", "right of Server"


def mermaid(rows: Iterable[tuple[Line, str, str]], *, reveal_secrets: bool) -> str:
    """A ``sequenceDiagram``: one arrow per ``(line, suffix, note_place)``, notes where TLS changes."""
    out = ["sequenceDiagram", "    participant Client", "    participant Server"]
    tls = False
    for line, suffix, where in rows:
        if line.sender != "event" and line.tls != tls:
            tls = line.tls
            out.append(f"    Note over Client,Server: {'TLS starts' if tls else 'TLS ends'}")
        shown = _truncate(display(_shown(line, reveal_secrets)), DISPLAY_LIMIT)
        words = ((shown if shown.strip() else "(empty line)") + suffix).translate(_MERMAID_TABLE)
        if line.sender == "client":
            out.append(f"    Client->>Server: {words}")
        elif line.sender == "server":
            out.append(f"    Server-->>Client: {words}")
        else:
            out.append(f"    Note {where}: {words}")
    return "\n".join(out)
