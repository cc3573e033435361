"""Saving a dialogue for later — a hand-in, a bug report: ``transcript.save("session.html")``.

The file's suffix chooses the form:

=================  ========================================================================
suffix             what is written
=================  ========================================================================
``.html``, .htm    a whole web page (UTF-8, styles inline) that any browser opens offline
``.json``          the title, both addresses and every line as data (:meth:`to_dicts`)
``.txt``, ``.log`` the plain text of :meth:`~smtplab.Transcript.text`, meanings included
=================  ========================================================================

AUTH secrets are masked in every form unless ``reveal_secrets=True`` is passed on purpose — a
hand-in should never carry a password, even the lab's fake one. :class:`~smtplab.Transcript`
and :class:`~smtplab.TranscriptPair` both have a ``save()`` method that calls :func:`save`.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from smtplab.render import json_safe
from smtplab.transcript import Transcript, TranscriptPair

__all__ = ["FORMAT", "SUFFIXES", "save", "to_json"]

#: What ``"format"`` says in a saved JSON file (its shape may grow; a reader checks this).
FORMAT = "smtplab-transcript/1"

#: Each suffix :func:`save` understands, and the form it writes.
SUFFIXES = {".html": "html", ".htm": "html", ".json": "json", ".txt": "text", ".log": "text"}


def to_json(record: Transcript | TranscriptPair, *, reveal_secrets: bool = False) -> dict[str, Any]:
    """A transcript (or both records of a pair) as JSON-ready data.

    A transcript gives ``{"format", "title", "peer", "local", "secrets", "lines": [...]}``;
    a pair gives ``{"format", "secrets", "client": {...}, "server": {...}}``.
    """
    secrets = "revealed" if reveal_secrets else "masked"
    if isinstance(record, TranscriptPair):
        return {
            "format": FORMAT,
            "secrets": secrets,
            "client": _one(record.client, reveal_secrets),
            "server": _one(record.server, reveal_secrets),
        }
    return {"format": FORMAT, "secrets": secrets, **_one(record, reveal_secrets)}


def _one(transcript: Transcript, reveal_secrets: bool) -> dict[str, Any]:
    def address(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    return {
        "title": json_safe(transcript.title),
        "peer": address(transcript.peer),
        "local": address(transcript.local),
        "lines": transcript.to_dicts(reveal_secrets=reveal_secrets),
    }


def _page(record: Transcript | TranscriptPair, reveal_secrets: bool) -> str:
    title = json_safe(getattr(record, "title", "")) or "SMTP dialogue"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)} · smtplab</title>\n</head>\n"
        '<body style="font-family:system-ui,sans-serif;margin:1.5em">\n'
        f"{record.html(reveal_secrets=reveal_secrets)}\n"
        "</body>\n</html>\n"
    )


def save(
    record: Transcript | TranscriptPair,
    path: str | os.PathLike[str],
    *,
    reveal_secrets: bool = False,
) -> Path:
    """Write a transcript (or a pair of them) to ``path``, in the form its suffix names.

    Args:
        record: A :class:`~smtplab.Transcript` or :class:`~smtplab.TranscriptPair`.
        path: Where to write: ``….html``, ``….json``, ``….txt`` or ``….log`` (replaced if it exists).
        reveal_secrets: Write AUTH secrets in the clear instead of ``********`` — never for a
            hand-in.

    Returns:
        The path written.

    Raises:
        ValueError: The suffix is not one of :data:`SUFFIXES` (the message lists them).
        TypeError: ``record`` is neither a Transcript nor a TranscriptPair.
    """
    if not isinstance(record, (Transcript, TranscriptPair)):
        raise TypeError(f"save() writes a Transcript or a TranscriptPair, not {type(record).__name__}")
    target = Path(path)
    form = SUFFIXES.get(target.suffix.lower())
    if form is None:
        known = ", ".join(SUFFIXES)
        raise ValueError(
            f"cannot tell what to write from the suffix of {os.fspath(path)!r}: end the name with one of {known} "
            "(e.g. 'session.html' for a page, 'session.json' for data)"
        )
    if form == "html":
        text = _page(record, reveal_secrets)
    elif form == "json":
        text = json.dumps(to_json(record, reveal_secrets=reveal_secrets), indent=1, ensure_ascii=False) + "\n"
    else:
        text = record.text(reveal_secrets=reveal_secrets) + "\n"
    target.write_text(text, encoding="utf-8")
    return target
