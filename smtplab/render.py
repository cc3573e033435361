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


# -- the session state machine ------------------------------------------------------------------
#
# Drawn from smtplab.protocol.transitions(), which asks SessionState itself where each command
# leads: the picture cannot disagree with the machine. The current state is marked in words
# ("you are here") as well as by colour and a thicker border.

_BOX_W, _BOX_H, _GAP, _MARGIN, _ROW_Y = 104, 44, 76, 14, 44
_NOW_FILL = "rgba(255, 170, 0, 0.35)"
_NOW_WORDS = "you are here"
_SVG_TEXT = "font-family:var(--jp-ui-font-family, sans-serif);font-size:11px"
# A halo in the page's own background colour keeps a label readable where a line crosses it.
_HALO = ' style="paint-order:stroke;stroke:var(--jp-layout-color0, white);stroke-width:6px"'
#: Said under every picture of the machine: what it leaves out.
STATE_NOTE = (
    "Not drawn: commands that keep the state (another RCPT TO, NOOP, VRFY, EXPN, HELP, AUTH), "
    "and a 421 from the server, which closes the session in any state."
)


def _machine() -> tuple[list[Any], dict[tuple[Any, Any], list[str]]]:
    """The states in drawing order and the moves between two different states, verbs grouped."""
    from smtplab import protocol

    states = list(protocol.State)
    moves: dict[tuple[Any, Any], list[str]] = {}
    for move in protocol.transitions():
        if move.source is not move.target:
            verbs = moves.setdefault((move.source, move.target), [])
            command = f'"{move.command}"' if move.command == "." else move.command
            verbs.append(f"{command} \u2192 {move.code}")
    return states, moves


def _move_label(verbs: list[str]) -> str:
    """``["EHLO → 250", "HELO → 250"]`` → ``"EHLO, HELO → 250"`` (one code said once)."""
    codes = {verb.rsplit(" ", 1)[1] for verb in verbs}
    if len(codes) == 1:
        return f"{', '.join(verb.split(' ')[0] for verb in verbs)} \u2192 {codes.pop()}"
    return ", ".join(verbs)


def _quit_label(states: list[Any], sources: list[Any]) -> str:
    others = [s for s in states[:-1] if s not in sources]
    where = "any state" if not others else f"any state but {', '.join(s.value for s in others)}"
    return f"from {where}"


def state_svg(current: Any = None) -> str:
    """The session state machine as an inline SVG; ``current`` (a ``State``) is highlighted.

    The highlighted box is filled, has a thicker border and says "you are here"; each box shows
    the state's meaning on hover.
    """
    from smtplab import protocol

    states, moves = _machine()
    closed = protocol.State.CLOSED
    row = [s for s in states if s is not closed]
    x = {state: _MARGIN + i * (_BOX_W + _GAP) for i, state in enumerate(row)}
    x[closed] = _MARGIN + len(row) * (_BOX_W + _GAP)
    width = x[closed] + _BOX_W + _MARGIN
    top, mid, bottom = _ROW_Y, _ROW_Y + _BOX_H / 2, _ROW_Y + _BOX_H
    index = {state: i for i, state in enumerate(row)}
    parts: list[str] = []
    labels: list[str] = []  # drawn last, over every line
    arcs_into: dict[Any, int] = {}
    deepest = bottom
    for (source, target), verbs in moves.items():
        label = escape(_move_label(verbs))
        if target is closed:
            continue  # drawn once, as the box's own label
        span = index[target] - index[source]
        if span == 1:  # the way forward: a straight arrow, its label above it
            x1, x2 = x[source] + _BOX_W, x[target]
            parts.append(
                f'<line x1="{x1}" y1="{mid}" x2="{x2 - 2}" y2="{mid}" stroke="currentColor" '
                f'marker-end="url(#smtplab-arrow)"/>'
            )
            words = label.split(" \u2192 ")
            first, second = (words[0], f"\u2192 {words[1]}") if len(words) == 2 else (label, "")
            centre = (x1 + x2) / 2
            labels.append(f'<text x="{centre}" y="{mid - 16}" text-anchor="middle">{first}</text>')
            labels.append(f'<text x="{centre}" y="{mid - 5}" text-anchor="middle">{second}</text>')
            continue
        # Any other move: an arc below the row, deeper the further it reaches.
        shift = 10 * arcs_into.get(target, 0)
        arcs_into[target] = arcs_into.get(target, 0) + 1
        start = x[source] + _BOX_W / 2 - 8
        end = x[target] + _BOX_W / 2 + 8 + shift
        depth = 34 * abs(span) + 4
        deepest = max(deepest, bottom + 0.75 * depth + 16)
        parts.append(
            f'<path d="M {start} {bottom} C {start} {bottom + depth}, {end} {bottom + depth}, {end} '
            f'{bottom + 2}" fill="none" stroke="currentColor" stroke-dasharray="4 3" '
            f'marker-end="url(#smtplab-arrow)"/>'
        )
        labels.append(
            f'<text x="{(start + end) / 2}" y="{bottom + 0.75 * depth + 12}" text-anchor="middle"{_HALO}>{label}</text>'
        )
    quit_sources = [source for (source, target) in moves if target is closed]
    quit_verbs = sorted({v for (s, t), vs in moves.items() if t is closed for v in vs})
    for state in states:
        now = state is current
        fill = _NOW_FILL if now else "none"
        dash = ' stroke-dasharray="5 3"' if state is closed else ""
        name = escape(state.value)
        title = escape(f"{state.value}: {state.meaning}" + (f" ({_NOW_WORDS})" if now else ""))
        parts.append(
            f'<g class="smtplab-state{" smtplab-state-now" if now else ""}"><title>{title}</title>'
            f'<rect x="{x[state]}" y="{top}" width="{_BOX_W}" height="{_BOX_H}" rx="8" fill="{fill}" '
            f'stroke="currentColor" stroke-width="{3 if now else 1}"{dash}/>'
            f'<text x="{x[state] + _BOX_W / 2}" y="{mid + (-3 if now else 4)}" text-anchor="middle" '
            f'style="font-size:13px;font-weight:{"bold" if now else "normal"}">{name}</text>'
        )
        if now:
            parts.append(
                f'<text x="{x[state] + _BOX_W / 2}" y="{mid + 12}" text-anchor="middle" '
                f'style="font-weight:bold">{_NOW_WORDS}</text>'
            )
        parts.append("</g>")
    parts.append(
        f'<text x="{x[closed] + _BOX_W / 2}" y="{top - 18}" text-anchor="middle">'
        f"{escape(', '.join(quit_verbs))}</text>"
        f'<text x="{x[closed] + _BOX_W / 2}" y="{top - 6}" text-anchor="middle">'
        f"{escape(_quit_label(states, quit_sources))}</text>"
    )
    parts.append(  # the way in
        f'<text x="{x[row[0]] + _BOX_W / 2}" y="{top - 6}" text-anchor="middle">220 greeting \u2193</text>'
    )
    height = deepest + _MARGIN
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="smtplab-state-machine" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px;{_SVG_TEXT}" fill="currentColor" role="img" '
        f'aria-label="{escape(_state_words(current))}">'
        '<defs><marker id="smtplab-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="currentColor"/></marker></defs>'
    )
    body = "".join(parts + labels).replace("<line ", '<line fill="none" ')
    return f"{head}{body}</svg>"


def _state_words(current: Any) -> str:
    if current is None:
        return "The SMTP session state machine"
    return f"Now: {current.value} ({_NOW_WORDS}): {current.meaning}"


def state_html(current: Any = None, allowed: Sequence[str] = ()) -> str:
    """The state machine's picture with a caption saying, in words, where the session stands."""
    words = escape(_state_words(current))
    valid = ""
    if allowed:
        valid = (
            f"<br>Valid now: {escape(', '.join('a line holding only .' if a == '.' else a for a in allowed))}"
        )
    return (
        '<div class="smtplab-state-diagram" style="max-width:100%;overflow-x:auto">'
        f"{state_svg(current)}"
        f'<div style="font-size:12px;margin:2px 0 0 0"><b>{words}</b>{valid}'
        f'<br><span style="opacity:0.75">{escape(STATE_NOTE)}</span></div></div>'
    )


def state_mermaid(current: Any = None) -> str:
    """The session state machine as a Mermaid ``stateDiagram-v2``; ``current`` marked in words and colour."""
    states, moves = _machine()
    out = ["stateDiagram-v2", "    direction LR"]
    for state in states:
        words = f"{state.value} ({_NOW_WORDS})" if state is current else state.value
        out.append(f'    state "{words.translate(_MERMAID_TABLE)}" as {state.value}')
    out.append(f"    [*] --> {states[0].value}: 220 greeting")
    for (source, target), verbs in moves.items():
        out.append(f"    {source.value} --> {target.value}: {_move_label(verbs).translate(_MERMAID_TABLE)}")
    out.append(f"    {states[-1].value} --> [*]")
    if current is not None:
        out.append("    classDef now fill:#ffd27f,stroke:#a15c00,stroke-width:3px,color:#000")
        out.append(f"    class {current.value} now")
    return "\n".join(out)


# -- raw bytes on the wire ------------------------------------------------------------------------

_WIRE_LINES = re.compile(rb"[^\n]*\n|[^\n]+$")
# Line endings are written out in words, in a small box: control pictures (U+240D, U+240A) are
# missing from many fonts, and a box of nothing would carry the meaning.
_ENDING_STYLE = (
    "font-family:var(--jp-ui-font-family, sans-serif);font-size:9px;padding:0 2px;margin-left:2px;"
    "border-radius:3px;white-space:nowrap"
)
_CRLF = (
    f'<span class="smtplab-crlf" style="{_ENDING_STYLE};background-color:rgba(128, 128, 128, 0.25)" '
    'title="CR LF (\\r\\n, bytes 13 and 10): the end of an SMTP line">CR LF</span>'
)
_BARE = {
    b"\n": ("LF", "a bare LF (\\n, byte 10) without its CR: SMTP lines end with CR LF"),
    b"\r": ("CR", "a bare CR (\\r, byte 13) without its LF: SMTP lines end with CR LF"),
}
#: What the boxes in a rendering of raw bytes stand for.
WIRE_LEGEND = (
    "CR LF = the two bytes \\r\\n (13, 10) that end every SMTP line; LF or CR alone, in a dashed box, "
    "a bare line ending"
)


def wire_text(line: bytes) -> str:
    """One line of raw bytes as HTML: its text, escaped, then its line ending in words.

    ``CR LF`` in a grey box for the ending SMTP wants; ``LF`` or ``CR`` in a dashed box for a
    bare one; "(no line ending)" when the line has none yet. Each says what it is on hover.
    """
    ending = b"\r\n" if line.endswith(b"\r\n") else line[-1:] if line[-1:] in _BARE else b""
    body = display(line[: len(line) - len(ending)].decode("utf-8", "surrogateescape"))
    if ending == b"\r\n":
        end = _CRLF
    elif ending:
        word, why = _BARE[ending]
        end = f'<span class="smtplab-bare" style="{_ENDING_STYLE};outline:1px dashed currentColor" title="{why}">{word}</span>'
    else:
        end = '<span style="opacity:0.6" title="no line ending yet">(no line ending)</span>'
    return f"{_html.escape(body, quote=True)}{end}"


def wire_rows(sender: str, data: bytes, *, tls: bool = False) -> list[str]:
    """HTML table rows for bytes that crossed the wire: one row per line, every CR and LF visible.

    Args:
        sender: ``"client"`` or ``"server"``; said in words in the first column.
        data: The exact bytes.
        tls: Whether they travelled inside TLS (said as "TLS", and "inside TLS" on hover).
    """
    who = "client \u2192" if sender == "client" else "\u2190 server"
    lock = (
        f'<td style="{TD};padding-right:0" title="inside TLS">TLS</td>' if tls else f'<td style="{TD}"></td>'
    )
    return [
        f'<tr class="smtplab-wire-{sender}" style="background-color:{_ROW_BACKGROUND[sender]}">'
        f'<td style="{TD};white-space:nowrap;border-left:3px solid {_ROW_EDGE[sender]}">{who}</td>{lock}'
        f'<td style="{TD};white-space:pre-wrap;word-break:break-all">{wire_text(raw)}</td></tr>'
        for raw in _WIRE_LINES.findall(data)
    ]
