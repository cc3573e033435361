"""Exercises that check themselves, for the notebooks and for grading a class.

In a notebook, a check cell passes your answer (usually a function you wrote) to :func:`check`::

    from smtplab.exercises import check

    check("00.1", send_to_two)  # a box: "Passed", or "Not yet" with a hint

Most checks run your code against a fresh lab server of their own, so they judge what your code
*does* — what crossed the wire — rather than how it is written. :func:`catalogue` lists every
exercise; ``smtplab grade`` runs hand-in notebooks and tabulates their verdicts.

For authors of exercises: a notebook's exercises live in ``smtplab/exercises/<topic>.py``,
listed once in :data:`~smtplab.exercises.registry.NOTEBOOK_MODULES`; each is a check function
decorated with :func:`exercise` that uses :func:`run_in_lab` and the predicates of
:mod:`smtplab.exercises.wire`, and raises :class:`NotYet` naming the mistake it found.
"""

from smtplab.exercises import wire
from smtplab.exercises.lab import DEFAULT_TIMEOUT, Trial, learner_function, run_in_lab
from smtplab.exercises.registry import Exercise, NotYet, catalogue, check, exercise
from smtplab.exercises.verdict import MIME_TYPE, Verdict

__all__ = [
    "DEFAULT_TIMEOUT",
    "MIME_TYPE",
    "Exercise",
    "NotYet",
    "Trial",
    "Verdict",
    "catalogue",
    "check",
    "exercise",
    "learner_function",
    "run_in_lab",
    "wire",
]
