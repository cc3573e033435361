"""The catalogue of exercises, and :func:`check`, which turns a check's finding into a Verdict.

Each notebook's exercises live in a module of their own (``quickstart.py`` for ``00.x``), listed
once in :data:`NOTEBOOK_MODULES`. An exercise is a check function decorated with
:func:`exercise`: it returns the message a learner sees on success, or raises :class:`NotYet`
naming the mistake it found; the hint for that mistake is declared with the exercise, so every
hint can be listed, reviewed and tested.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from smtplab.errors import NotYet, UnknownExerciseError
from smtplab.exercises.verdict import Verdict

__all__ = [
    "FRAMEWORK_HINTS",
    "NOTEBOOK_MODULES",
    "Exercise",
    "NotYet",
    "catalogue",
    "check",
    "exercise",
    "exercise_by_id",
]

#: Which module of ``smtplab.exercises`` holds each notebook's exercises: one line per notebook.
#: To add a notebook's exercises, write ``smtplab/exercises/<topic>.py`` (see ``quickstart.py``)
#: and add its line under its number's comment (the comments keep parallel additions apart).
NOTEBOOK_MODULES: Mapping[str, str] = MappingProxyType(
    {
        # 00 quickstart
        "00": "quickstart",
        # 01 event loops
        "01": "event_loops",
        # 02 handlers
        "02": "hooks",
        # 03 SMTP conversation
        "03": "conversation",
        # 04 messages and MIME
        "04": "messages",
        # 05 AUTH
        "05": "authentication",
        # 06 SSL and STARTTLS
        "06": "starttls",
        # 07 parallel sending
        "07": "parallel_sending",
        # 08 classroom and deploy
        "08": "classroom",
    }
)

#: Hints for mistakes any exercise can meet; an exercise may declare its own text for a key.
FRAMEWORK_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "not-a-function": (
            "Pass the function you wrote itself: its name, without parentheses after it "
            "(the check calls it for you, against a lab server of its own)."
        ),
        "called-not-passed": (
            "You passed what calling your function gave back, not the function. Drop the "
            "parentheses after its name in the check cell: the check calls it for you."
        ),
        "wrong-parameters": (
            "Keep the parameters the exercise gives your function (its first line, `def …(…):`): "
            "the check calls it with exactly those."
        ),
        "timed-out": (
            "Your code was still waiting when the check stopped it. Code that talks SMTP waits "
            "for a reply after each command: a command sent without its line ending (\\r\\n), "
            "a wait for something that never comes, or a loop that never ends all look like this. "
            "Read what the server heard, below, to see where it stopped."
        ),
        "still-running": (
            "Your code is still running in the background: a loop that never waits on the network "
            "cannot be stopped from outside, so it keeps one processor busy. Restart the kernel "
            "(Kernel → Restart Kernel) to stop it, then look for a loop whose condition never "
            "becomes false."
        ),
        "raised": (
            "Your code stopped with an exception. Its last lines are below: the bottom line says "
            "what went wrong, the lines above it where."
        ),
    }
)

_ID = re.compile(r"(\d\d)\.([1-9]\d*)")
_NOTEBOOK = re.compile(r"(\d\d)-[a-z0-9]+(?:-[a-z0-9]+)*\.ipynb")
_KEY = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

CheckFunction = Callable[..., str]
F = TypeVar("F", bound=CheckFunction)


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook.

    Attributes:
        id: ``"NN.M"``: the notebook's number, then the exercise's number in it.
        notebook: The notebook's file name, e.g. ``"00-quickstart.ipynb"``.
        title: A few words naming the task.
        check: The check function: takes the learner's answer(s), returns the success message
            or raises :class:`NotYet`.
        hints: A hint for each mistake the check can name, by key.
    """

    id: str
    notebook: str
    title: str
    check: CheckFunction = field(repr=False)
    hints: Mapping[str, str] = field(repr=False)

    @property
    def usage(self) -> str:
        """How a check cell calls it, e.g. ``check("00.1", send_to_two)``."""
        names = [
            p.name if p.kind is not p.KEYWORD_ONLY else f"{p.name}={p.name}"
            for p in inspect.signature(self.check).parameters.values()
        ]
        return f'check("{self.id}"{"".join(", " + name for name in names)})'

    def hint_for(self, mistake: str) -> str:
        """The hint for ``mistake``: the exercise's own, else the framework's.

        Raises:
            KeyError: Neither declares it (a mistake in the check, not in the learner's answer).
        """
        if mistake in self.hints:
            return self.hints[mistake]
        if mistake in FRAMEWORK_HINTS:
            return FRAMEWORK_HINTS[mistake]
        raise KeyError(
            f"the check of exercise {self.id} names the mistake {mistake!r}, which has no hint: "
            f"declare it in hints= of @exercise (declared: {', '.join(sorted(self.hints))})"
        )

    def judge(self, *answers: Any, **named: Any) -> Verdict:
        """Run the check on the learner's answer(s) and return its :class:`Verdict`."""
        try:
            inspect.signature(self.check).bind(*answers, **named)
        except TypeError as error:
            raise TypeError(f"{error}. Call it as {self.usage}") from None
        try:
            message = self.check(*answers, **named)
        except NotYet as finding:
            return Verdict(
                exercise=self.id,
                title=self.title,
                passed=False,
                message=finding.message,
                hint=self.hint_for(finding.mistake),
                mistake=finding.mistake,
                evidence=finding.evidence,
            )
        if not isinstance(message, str) or not message:
            raise TypeError(
                f"the check of exercise {self.id} returned {message!r}: a check returns the message "
                "for a passing answer (a non-empty str) or raises NotYet"
            )
        return Verdict(exercise=self.id, title=self.title, passed=True, message=message)


# Every exercise defined so far, by id; catalogue() lists those of registered modules only.
_defined: dict[str, Exercise] = {}


def exercise(
    id: str,
    *,
    notebook: str,
    title: str,
    hints: Mapping[str, str],
) -> Callable[[F], Exercise]:
    """Declare an exercise: decorate its check function.

    The check takes what the learner passes to ``check(id, …)`` (usually their function), and
    returns the message shown when the answer passes, or raises :class:`NotYet` with a mistake
    key from ``hints``. Example::

        @exercise(
            "00.9",
            notebook="00-quickstart.ipynb",
            title="Say hello",
            hints={"no-ehlo": "A session opens with EHLO: the client says who it is first."},
        )
        def say_hello(greet):
            trial = run_in_lab(greet)
            if "EHLO" not in wire.commands(trial):
                raise NotYet("no-ehlo", "the server never heard EHLO", evidence=wire.heard(trial))
            return "the server heard your EHLO and answered 250"

    Raises:
        ValueError: The id, notebook name, title or a hint key is malformed, or the id is taken.
    """
    match = _ID.fullmatch(id)
    if match is None:
        raise ValueError(f"an exercise id is 'NN.M' (notebook number, exercise number), not {id!r}")
    notebook_match = _NOTEBOOK.fullmatch(notebook)
    if notebook_match is None or notebook_match.group(1) != match.group(1):
        raise ValueError(
            f"exercise {id} must name its notebook file, e.g. '{match.group(1)}-topic.ipynb', not {notebook!r}"
        )
    if not title.strip():
        raise ValueError(f"exercise {id} needs a title")
    for key, text in hints.items():
        if not _KEY.fullmatch(key) or not str(text).strip():
            raise ValueError(
                f"exercise {id}: hint keys are kebab-case words with a text each, not {key!r}: {text!r}"
            )

    def register(check_function: F) -> Exercise:
        defined = Exercise(id, notebook, title, check_function, MappingProxyType(dict(hints)))
        previous = _defined.get(id)
        if previous is not None and previous.check.__module__ != check_function.__module__:
            raise ValueError(
                f"exercise {id} is defined twice: in {previous.check.__module__} and {check_function.__module__}"
            )
        _defined[id] = defined
        return defined

    return register


def catalogue() -> list[Exercise]:
    """Every exercise of every notebook, in order of id.

    Raises:
        ImportError: A module listed in :data:`NOTEBOOK_MODULES` is missing.
        ValueError: A module defines an exercise of another notebook's number.
    """
    modules = {}
    for number, name in NOTEBOOK_MODULES.items():
        module = importlib.import_module(f"smtplab.exercises.{name}")
        modules[module.__name__] = number
    found = []
    for item in _defined.values():
        number = modules.get(item.check.__module__)
        if number is None:
            continue  # defined outside the catalogue (a test's own exercise, say)
        if not item.id.startswith(f"{number}."):
            raise ValueError(f"{item.check.__module__} holds notebook {number}'s exercises, not {item.id}")
        found.append(item)
    return sorted(found, key=lambda item: tuple(int(part) for part in item.id.split(".")))


def exercise_by_id(exercise_id: str) -> Exercise:
    """The catalogue's exercise with this id.

    Raises:
        UnknownExerciseError: There is none; the message suggests the closest ids.
    """
    exercises = {item.id: item for item in catalogue()}
    if exercise_id in exercises:
        return exercises[exercise_id]
    notebook = str(exercise_id).split(".")[0]
    same = [candidate for candidate in exercises if candidate.split(".")[0] == notebook]
    nearby = difflib.get_close_matches(str(exercise_id), list(exercises), n=3)
    # A typo is most likely within its own notebook: "00.3" means 00.1 or 00.2 before 06.3.
    close = (same + [candidate for candidate in nearby if candidate not in same])[:3]
    suggestion = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownExerciseError(
        f"there is no exercise {exercise_id!r}.{suggestion} Ids are 'NN.M' as in the exercise's "
        f"heading; smtplab.exercises.catalogue() lists all {len(exercises)}."
    )


def check(exercise_id: str, /, *answers: Any, **named: Any) -> Verdict:
    """Check your answer to an exercise; the verdict shows whether it passed, and a hint if not.

    Args:
        exercise_id: The exercise's id, e.g. ``"00.1"``, as in its heading.
        *answers: What the exercise asks you to pass, usually the function you wrote (without
            calling it): ``check("00.1", send_to_two)``.

    Returns:
        A :class:`Verdict`: displayed as a box saying "Passed" or "Not yet", with a hint
        aimed at what went wrong.

    Raises:
        UnknownExerciseError: No exercise has this id.
        TypeError: The answers do not fit the exercise (the message shows the right call).
    """
    return exercise_by_id(exercise_id).judge(*answers, **named)
