"""The lab server's mailbox: every captured message, ready to inspect.

The server's event loop does the least possible work per message: it appends a
:class:`CapturedMessage` under a lock and wakes waiters. Parsing the message and running
observer callbacks happen elsewhere — parsing lazily when ``.message`` is first read, callbacks on
a small dispatcher thread — so a slow callback (a widget redrawing, a learner's ``print``) never
stalls an SMTP session.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from functools import cached_property
from typing import TYPE_CHECKING, Any, overload

from smtplab import mime
from smtplab.errors import MailboxTimeoutError, MailboxWarning
from smtplab.protocol import bare_line_endings

if TYPE_CHECKING:
    import queue

    from smtplab.transcript import Transcript

__all__ = ["CapturedMessage", "Mailbox"]

Observer = Callable[["CapturedMessage"], Any]

_ids = itertools.count(1)


@dataclass(eq=False, repr=False)
class CapturedMessage:
    """One message as the lab server received it.

    Attributes:
        mail_from: The envelope sender (``MAIL FROM:<…>``); ``""`` for the null sender ``<>``.
        rcpt_tos: The envelope recipients (``RCPT TO:<…>``), in the order accepted.
        raw: The message content exactly as received after ``DATA`` (headers and body), bytes.
        peer: The client's address, ``(host, port)``.
        received: When the final ``.`` of ``DATA`` arrived (UTC).
        helo: The name the client gave in ``EHLO``/``HELO``.
        mail_options: ESMTP parameters of ``MAIL FROM``, upper-cased (e.g. ``SIZE=1234``,
            ``SMTPUTF8``, ``BODY=8BITMIME``).
        rcpt_options: ESMTP parameters of the ``RCPT TO`` commands.
        tls: A summary of the TLS session the message travelled in, or ``None`` for plain text.
        auth_user: The user who authenticated with ``AUTH``, or ``None``.
        transcript: The server's record of the SMTP session that delivered the message.
        id: A short identifier, the one quoted in the server's ``250 … queued as`` reply.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    peer: tuple[Any, ...] | str | None = None
    received: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    helo: str | None = None
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()
    tls: Any = None
    auth_user: str | None = None
    transcript: Transcript | None = None
    id: str = field(default_factory=lambda: f"L{next(_ids):06d}")

    @cached_property
    def message(self) -> EmailMessage:
        """The content parsed with the stdlib ``email`` package (modern policy), on first use."""
        import email.policy  # parsing is the only user: importing it lazily keeps import fast

        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def size(self) -> int:
        """Size of the raw content in bytes."""
        return len(self.raw)

    @property
    def subject(self) -> str:
        """The decoded ``Subject`` header, or ``""``."""
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """The text body (plain preferred over HTML), with Python's ``\n`` line endings.

        8-bit text that declares no charset is read as UTF-8, and :attr:`flags` says so.
        """
        part = mime.body(self.message, "plain")
        if part is None:  # not `or`: a part without headers (a bare body) is falsy, as len() is 0
            part = mime.body(self.message, "html")
        return "" if part is None else mime.decode_text(part)[0].replace("\r\n", "\n")

    @property
    def html(self) -> str:
        """The ``text/html`` body with Python's ``\n`` line endings, or ``""`` when there is none."""
        part = mime.body(self.message, "html")
        return "" if part is None else mime.decode_text(part)[0].replace("\r\n", "\n")

    @property
    def attachments(self) -> list[mime.Attachment]:
        """The attached files (name, content type, decoded bytes, size), inline images included."""
        return mime.attachments(self.message)

    def mime_tree(self) -> str:
        """The message's MIME structure as a tree, one line per part (see :func:`smtplab.mime.mime_tree`)."""
        return mime.mime_tree(self.message)

    @cached_property
    def flags(self) -> tuple[str, ...]:
        """Anomalies worth showing a learner, for teaching rather than refusal.

        ``"bare-lf"`` / ``"bare-cr"``: a line ending other than CRLF (RFC 5321 §2.3.8);
        ``"8bit-without-charset"``: 8-bit text with no declared charset, read as UTF-8.
        Worked out on first read, so capturing stays cheap.
        """
        found = [f"bare-{ending.lower()}" for ending in bare_line_endings(self.raw)]
        if not self.raw.isascii():
            parts = (part for part in self.message.walk() if part.get_content_maintype() == "text")
            if any(mime.decode_text(part)[1] for part in parts):
                found.append(mime.GUESSED_UTF8)
        return tuple(found)

    def __repr__(self) -> str:
        rcpts = ", ".join(self.rcpt_tos)
        return (
            f"<CapturedMessage {self.id} from {self.mail_from or '<>'!r} to {rcpts!r}, "
            f"subject {self.subject!r}, {self.size} bytes>"
        )


class Mailbox:
    """A thread-safe store of :class:`CapturedMessage`, in arrival order.

    It behaves like a read-only list (``len``, indexing, slicing, iteration) and adds
    :meth:`wait_for`, :meth:`observe` and memory bounds.

    Args:
        max_messages: Keep at most this many messages in memory; the oldest are dropped first.
            ``None`` keeps everything.
        max_bytes: Keep at most this many bytes of raw content in memory, oldest dropped first.
    """

    def __init__(self, *, max_messages: int | None = None, max_bytes: int | None = None) -> None:
        for name, value in (("max_messages", max_messages), ("max_bytes", max_bytes)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number or None, not {value!r}")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._messages: deque[CapturedMessage] = deque()
        self._bytes = 0
        self._received = 0
        self._dropped = 0
        self._changed = threading.Condition()
        self._observers: list[Observer] = []
        self._events: queue.SimpleQueue[CapturedMessage | None] | None = None
        self._dispatcher: threading.Thread | None = None
        self.observer_errors: list[BaseException] = []

    # -- writing (the server's loop) -------------------------------------------------------

    def append(self, message: CapturedMessage) -> None:
        """Store a message, wake :meth:`wait_for` and queue the observers. Cheap by design."""
        dropped = 0
        with self._changed:
            self._messages.append(message)
            self._bytes += message.size
            self._received += 1
            while len(self._messages) > 1 and self._over_bounds():
                self._bytes -= self._messages.popleft().size
                dropped += 1
            self._dropped += dropped
            self._changed.notify_all()
            if self._observers:
                self._dispatch(message)
        if dropped and self._dropped == dropped:  # warn once, on the first drop
            # The message is stored already: even where warnings are errors, the server thread
            # must not turn this notice into a refusal (the client would retry a duplicate).
            with contextlib.suppress(MailboxWarning):
                warnings.warn(
                    f"Mailbox full: dropped the {dropped} oldest message(s) to stay within "
                    f"max_messages={self.max_messages}, max_bytes={self.max_bytes}. "
                    "Mailbox.dropped counts them from now on. Raise the limits, call .clear(), "
                    "or use maildir= to keep every message on disk.",
                    MailboxWarning,
                    stacklevel=2,
                )

    def _over_bounds(self) -> bool:
        return (self.max_messages is not None and len(self._messages) > self.max_messages) or (
            self.max_bytes is not None and self._bytes > self.max_bytes
        )

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, index: int) -> CapturedMessage: ...
    @overload
    def __getitem__(self, index: slice) -> list[CapturedMessage]: ...
    def __getitem__(self, index: int | slice) -> CapturedMessage | list[CapturedMessage]:
        with self._changed:
            snapshot = list(self._messages)
        return snapshot[index]

    def __iter__(self) -> Iterator[CapturedMessage]:
        with self._changed:
            return iter(list(self._messages))

    def __bool__(self) -> bool:
        return bool(self._messages)

    @property
    def latest(self) -> CapturedMessage | None:
        """The most recent message, or ``None`` when the mailbox is empty."""
        with self._changed:
            return self._messages[-1] if self._messages else None

    @property
    def received(self) -> int:
        """How many messages arrived in total, including any dropped by the bounds."""
        return self._received

    @property
    def dropped(self) -> int:
        """How many old messages were dropped to respect ``max_messages`` / ``max_bytes``."""
        return self._dropped

    @property
    def nbytes(self) -> int:
        """Raw bytes of the messages currently held."""
        return self._bytes

    def clear(self) -> None:
        """Forget every message held (counters of received and dropped messages stay)."""
        with self._changed:
            self._messages.clear()
            self._bytes = 0
            self._changed.notify_all()

    def wait_for(self, count: int = 1, *, timeout: float = 5.0) -> list[CapturedMessage]:
        """Block until at least ``count`` messages have arrived in total, then return those held.

        Counts every message received since the mailbox was created (``clear()`` does not
        reset the count), so ``wait_for(len(box) + 1)`` waits for the next one.

        Raises:
            MailboxTimeoutError: ``timeout`` seconds passed first (a ``TimeoutError`` too); the
                message says how many arrived.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._received < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MailboxTimeoutError(
                        f"waited {timeout:g} s for {count} message(s) but {self._received} "
                        "arrived. Did the send succeed? Look at the client's transcript for the "
                        "server's reply, and check that it used this server's port."
                    )
                self._changed.wait(remaining)
            return list(self._messages)

    # -- observers --------------------------------------------------------------------------

    def observe(self, callback: Observer) -> Observer:
        """Call ``callback(message)`` for every new message; returns it (usable as decorator).

        Callbacks run on the mailbox's dispatcher thread, one at a time, in arrival order.
        An exception in a callback is kept in :attr:`observer_errors`, never raised into the
        server.
        """
        with self._changed:
            self._observers.append(callback)
        return callback

    def unobserve(self, callback: Observer) -> None:
        """Stop calling ``callback``; stops the dispatcher thread when none is left."""
        with self._changed:
            if callback in self._observers:
                self._observers.remove(callback)
            if not self._observers:
                self._stop_dispatcher()

    def close(self) -> None:
        """Let the dispatcher thread finish its queue and exit (observers stay registered)."""
        with self._changed:
            self._stop_dispatcher()

    def _dispatch(self, message: CapturedMessage) -> None:
        if self._dispatcher is None:
            import queue  # only observed mailboxes need the dispatcher

            self._events = queue.SimpleQueue()
            self._dispatcher = threading.Thread(
                target=self._run_observers, args=(self._events,), name="smtplab-mailbox", daemon=True
            )
            self._dispatcher.start()
        assert self._events is not None
        self._events.put(message)

    def _stop_dispatcher(self) -> None:
        if self._events is not None:
            self._events.put(None)
        self._events = None
        self._dispatcher = None

    def _run_observers(self, events: queue.SimpleQueue[CapturedMessage | None]) -> None:
        while (message := events.get()) is not None:
            with self._changed:
                observers = list(self._observers)
            for callback in observers:
                try:
                    callback(message)
                except Exception as error:  # noqa: BLE001 - kept for the learner to read
                    self.observer_errors.append(error)

    def __repr__(self) -> str:
        extra = f", {self._dropped} dropped" if self._dropped else ""
        return f"<Mailbox {len(self)} message(s), {self._bytes} bytes{extra}>"
