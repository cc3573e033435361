"""What a check says: :class:`Verdict`, shown as a pass/fail box in Jupyter and as text in a terminal.

A verdict also travels inside a notebook's outputs in a machine-readable form (the MIME type
:data:`MIME_TYPE`, beside the HTML and the text), which is how ``smtplab grade`` reads a
hand-in's results without trusting its text.

The module is pure: no I/O.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MIME_TYPE", "Verdict"]

#: The MIME type of a verdict's JSON form in notebook outputs (read by the grader).
MIME_TYPE = "application/vnd.smtplab.verdict+json"

#: The words that say the outcome: the box never relies on colour or a symbol alone.
PASSED, NOT_YET = "Passed", "Not yet"

_FORMAT = 1  # version of the JSON form
_EVIDENCE_SHOWN = 30  # lines of evidence shown at most

# Semi-transparent colours read on light and dark JupyterLab themes alike; the text colour is
# the theme's own.
_COLOURS = {
    True: ("rgba(52, 168, 83, 0.12)", "rgba(52, 168, 83, 0.85)"),
    False: ("rgba(234, 134, 0, 0.12)", "rgba(234, 134, 0, 0.9)"),
}


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one exercise.

    Attributes:
        exercise: The exercise's id, e.g. ``"03.2"``.
        title: The exercise's title.
        passed: Whether the answer did what the exercise asks.
        message: What the check found, in a sentence or two.
        hint: When not passed: a nudge aimed at the mistake found — never the solution.
        mistake: When not passed: a short key naming the mistake (``"two-messages"``), for
            tests and gradebooks.
        evidence: Lines that show what happened, e.g. what the lab server heard (secrets masked).
    """

    exercise: str
    title: str
    passed: bool
    message: str
    hint: str = ""
    mistake: str = ""
    evidence: tuple[str, ...] = field(default=())

    @property
    def status(self) -> str:
        """``"Passed"`` or ``"Not yet"``."""
        return PASSED if self.passed else NOT_YET

    # -- machine-readable form --------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the grader reads from a notebook's outputs)."""
        return {
            "format": _FORMAT,
            "exercise": self.exercise,
            "title": self.title,
            "passed": self.passed,
            "message": self.message,
            "hint": self.hint,
            "mistake": self.mistake,
            "evidence": list(self.evidence),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """Read :meth:`to_json`'s form back.

        Raises:
            ValueError: ``data`` is not a verdict (a field is missing or has the wrong type).
        """
        try:
            verdict = cls(
                exercise=str(data["exercise"]),
                title=str(data.get("title", "")),
                passed=data["passed"],
                message=str(data.get("message", "")),
                hint=str(data.get("hint", "")),
                mistake=str(data.get("mistake", "")),
                evidence=tuple(str(line) for line in data.get("evidence", ())),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a verdict: {error!r} in {data!r}") from None
        if not isinstance(verdict.passed, bool):
            raise ValueError(f"not a verdict: 'passed' must be true or false, not {verdict.passed!r}")
        return verdict

    # -- for people -----------------------------------------------------------------------------

    def __str__(self) -> str:
        lines = [f"[{self.status}] {self.exercise} {self.title}".rstrip(), f"  {self.message}"]
        if self.hint:
            lines.append(f"  Hint: {self.hint}")
        if self.evidence:
            lines.append("  What happened:")
            lines += [f"    {line}" for line in self._shown_evidence()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        mistake = f" ({self.mistake})" if self.mistake else ""
        return f"<Verdict {self.exercise} {self.status}{mistake}: {self.message!r}>"

    def _shown_evidence(self) -> list[str]:
        lines = list(self.evidence[:_EVIDENCE_SHOWN])
        if len(self.evidence) > _EVIDENCE_SHOWN:
            lines.append(f"… {len(self.evidence) - _EVIDENCE_SHOWN} more lines")
        return lines

    def _repr_html_(self) -> str:
        background, edge = _COLOURS[self.passed]
        e = html.escape
        parts = [
            f'<div class="smtplab-verdict smtplab-verdict-{"passed" if self.passed else "not-yet"}" '
            f'role="status" style="border-left:6px solid {edge};background:{background};'
            'padding:6px 10px;margin:4px 0;border-radius:3px;line-height:1.45">',
            f'<div><b style="font-size:1.05em">{e(self.status)}</b>'
            f' <span style="opacity:0.8">· Exercise {e(self.exercise)}'
            f"{' — ' + e(self.title) if self.title else ''}</span></div>",
            f"<div>{e(self.message)}</div>",
        ]
        if self.hint:
            parts.append(f"<div><b>Hint:</b> {e(self.hint)}</div>")
        if self.evidence:
            evidence = "\n".join(self._shown_evidence())
            parts.append(
                "<details><summary>What happened</summary>"
                '<pre style="margin:4px 0;font-size:12px;white-space:pre-wrap">'
                f"{e(evidence)}</pre></details>"
            )
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": str(self), "text/html": self._repr_html_(), MIME_TYPE: self.to_json()}
