"""``TranscriptView``: an SMTP dialogue, drawn line by line as it happens."""

from __future__ import annotations

from collections import deque
from typing import Any

import ipywidgets

from smtplab import render
from smtplab.transcript import Line, Transcript
from smtplab.widgets._live import LiveBox, escape, reports_errors

__all__ = ["TranscriptView"]

#: Lines drawn at most; older ones stay in the Transcript itself.
DEFAULT_MAX_ROWS = 500

_LINE_LIMIT = 1000  # characters of one line drawn
_REVEAL_HINT = 'tick "reveal secrets" to show it'


class TranscriptView(LiveBox):
    """A :class:`~smtplab.transcript.Transcript`, drawn live: colour by direction, TLS marked.

    Each final reply line has its meaning beside it (from the library's
    :attr:`Line.meaning <smtplab.transcript.Line.meaning>`); every reply line shows it on hover.
    AUTH secrets stay masked until "reveal secrets" is ticked.

    Args:
        transcript: The transcript to show, e.g. ``client.transcript`` or
            ``server.transcripts[-1]``; ``None`` for an empty view (set :attr:`transcript` later).
        max_rows: Draw at most this many lines (the newest); the transcript keeps them all.
        reveal_secrets: Start with secrets shown.
        height: The CSS height of the scrolling area.

    Example:
        >>> TranscriptView(client.transcript)  # doctest: +SKIP
    """

    def __init__(
        self,
        transcript: Transcript | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        reveal_secrets: bool = False,
        height: str = "22em",
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, not {max_rows!r}")
        self.max_rows = max_rows
        self.height = height
        self.caption = ipywidgets.HTML()
        self.reveal = ipywidgets.Checkbox(
            value=reveal_secrets,
            description="reveal secrets",
            indent=False,
            layout=ipywidgets.Layout(width="auto"),
        )
        self.table = ipywidgets.HTML(layout=ipywidgets.Layout(width="100%"))
        self._transcript: Transcript | None = None
        self._lines: deque[Line] = deque(maxlen=max_rows)
        self._rows: deque[str] = deque(maxlen=max_rows)
        self._taken = 0  # lines of the transcript drawn or skipped so far
        self._start = 0.0  # time of the transcript's first line
        super().__init__([ipywidgets.HBox([self.caption, self.reveal]), self.table])
        self.add_class("smtplab-transcript-view")
        self.reveal.observe(self._on_reveal_value, names="value")
        self.transcript = transcript

    @property
    def transcript(self) -> Transcript | None:
        """The transcript shown; assign another one to switch (the old one is unobserved)."""
        return self._transcript

    @transcript.setter
    def transcript(self, transcript: Transcript | None) -> None:
        if transcript is not None and not isinstance(transcript, Transcript):
            raise TypeError(f"TranscriptView shows a Transcript, not {type(transcript).__name__}")
        with self._live_lock:
            if self._transcript is not None:
                self._transcript.unobserve(self._on_transcript_line)
            self._transcript = transcript
            self._lines.clear()
            self._rows.clear()
            self._taken = 0
            if transcript is not None:
                transcript.observe(self._on_transcript_line)
        self.refresh()

    @property
    def lines(self) -> list[Line]:
        """The lines drawn right now (at most ``max_rows``, the newest)."""
        with self._live_lock:
            return list(self._lines)

    # -- events -----------------------------------------------------------------------------

    def _on_transcript_line(self, line: Line) -> Any:  # any thread: only asks for a redraw
        self.request_refresh()

    @reports_errors
    def _on_reveal_value(self, change: dict[str, Any]) -> None:
        with self._live_lock:
            self._rows.clear()
            self._rows.extend(self._draw(line) for line in self._lines)
        self.refresh()

    # -- drawing ----------------------------------------------------------------------------

    def _draw(self, line: Line) -> str:
        return render.html_row(
            line,
            reveal_secrets=self.reveal.value,
            start=self._start,
            limit=_LINE_LIMIT,
            reveal_hint=_REVEAL_HINT,
        )

    def _refresh(self) -> None:
        transcript = self._transcript
        if transcript is None:
            self.caption.value = '<span style="opacity:0.7">no transcript yet</span>'
            self.table.value = ""
            return
        if len(transcript) < self._taken:  # transcript.clear() was called
            self._lines.clear()
            self._rows.clear()
            self._taken = 0
        new = transcript[self._taken :]
        if new and not self._taken:
            self._start = new[0].time
        self._taken += len(new)
        for line in new[-self.max_rows :]:  # only what will be drawn is rendered, once
            self._lines.append(line)
            self._rows.append(self._draw(line))
        self._render(transcript)

    def _render(self, transcript: Transcript) -> None:
        hidden = 0 if self.reveal.value else sum(line.secret_from is not None for line in self._lines)
        parts = [f"<b>{escape(transcript.title)}</b>"] if transcript.title else []
        parts.append(f"{self._taken} line{'s' if self._taken != 1 else ''}")
        if self._taken > len(self._lines):
            parts.append(f"showing the last {len(self._lines)}")
        if hidden:
            parts.append(f"{hidden} secret{'s' if hidden != 1 else ''} hidden")
        parts.append(escape(render.LEGEND))
        self.caption.value = f'<span style="font-size:12px;opacity:0.85">{" · ".join(parts)}</span>'
        rows = "".join(self._rows) or f'<tr><td style="{render.TD};opacity:0.7">(no lines yet)</td></tr>'
        # column-reverse keeps the scroll position at the newest line as rows arrive.
        self.table.value = (
            f'<div style="max-height:{escape(self.height)};overflow:auto;display:flex;'
            'flex-direction:column-reverse;line-height:1.35">'
            f'<div><table style="{render.TABLE}"><tbody>{rows}</tbody></table></div></div>'
        )

    def _unobserve_models(self) -> None:
        if self._transcript is not None:
            self._transcript.unobserve(self._on_transcript_line)
