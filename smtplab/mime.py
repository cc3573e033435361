"""Reading a message's MIME structure: its bodies, its attachments, its tree of parts.

A message is a tree (RFC 2045, RFC 2046): ``multipart/*`` parts hold other parts, the leaves hold
text, HTML, images or files, each with its own ``Content-Type`` and transfer encoding. These
functions read any :class:`email.message.Message` — one built with ``EmailMessage()`` in a cell,
or one the lab server captured (:class:`~smtplab.mailbox.CapturedMessage` uses them).

Example:
    >>> from email.message import EmailMessage
    >>> msg = EmailMessage()
    >>> msg.set_content("Hello")
    >>> msg.add_alternative("<p>Hello</p>", subtype="html")
    >>> msg.add_attachment(b"1,2\\n", maintype="text", subtype="csv", filename="data.csv")
    >>> print(mime_tree(msg))
    multipart/mixed
    ├─ multipart/alternative
    │  ├─ text/plain  (charset=utf-8, encoding=7bit, 6 bytes)
    │  └─ text/html  (charset=utf-8, encoding=7bit, 13 bytes)
    └─ text/csv  (name='data.csv', encoding=base64, attachment, 4 bytes)

The module is pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage, Message

__all__ = ["Attachment", "attachments", "body", "decode_text", "mime_tree"]

#: The flag a message gets when its 8-bit text declared no charset and was read as UTF-8.
GUESSED_UTF8 = "8bit-without-charset"


@dataclass(frozen=True)
class Attachment:
    """One attached file.

    Attributes:
        filename: The file name the sender gave (``Content-Disposition``), or ``None``.
        content_type: E.g. ``"application/pdf"``.
        data: The decoded bytes (base64 or quoted-printable undone).
        disposition: ``"attachment"`` or ``"inline"`` (an inline image, say), or ``None``.
        content_id: The ``Content-ID`` an HTML body refers to as ``cid:…``, or ``None``.
    """

    filename: str | None
    content_type: str
    data: bytes
    disposition: str | None = None
    content_id: str | None = None

    @property
    def size(self) -> int:
        """The decoded size in bytes."""
        return len(self.data)

    def __repr__(self) -> str:
        return f"<Attachment {self.filename!r} {self.content_type}, {self.size:,} bytes>"


def _payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def decode_text(part: Message) -> tuple[str, bool]:
    """The text of a ``text/*`` part, and whether its charset had to be guessed as UTF-8.

    A part with 8-bit bytes but no declared charset is, by RFC 2045 §5.2, US-ASCII — which it
    cannot be. Mail software that forgets the charset almost always meant UTF-8, so that is tried
    first (and reported); undecodable bytes become U+FFFD rather than an exception.
    """
    data = _payload(part)
    declared = part.get_content_charset()
    if (declared is None or declared == "us-ascii") and not data.isascii():
        try:
            return data.decode("utf-8"), True
        except UnicodeDecodeError:
            return data.decode("latin-1"), True
    try:
        return data.decode(declared or "ascii", "replace"), False
    except LookupError:  # an unknown charset name
        return data.decode("utf-8", "replace"), False


def body(message: Message, subtype: str = "plain") -> Message | None:
    """The part holding the ``text/<subtype>`` body (``"plain"`` or ``"html"``), or ``None``.

    For an :class:`~email.message.EmailMessage` this is ``get_body()``: attachments are skipped.
    """
    if isinstance(message, EmailMessage):
        return message.get_body(preferencelist=(subtype,))
    return next(
        (
            part
            for part in message.walk()
            if part.get_content_type() == f"text/{subtype}" and part.get_content_disposition() != "attachment"
        ),
        None,
    )


def attachments(message: Message) -> list[Attachment]:
    """Every attached file, inline images included, in the order they appear.

    A leaf part counts when it has a file name or an ``attachment``/``inline`` disposition, and
    is not the message's text or HTML body.
    """
    bodies = {id(part) for part in (body(message, "plain"), body(message, "html")) if part is not None}
    found = []
    for part in message.walk():
        if part.is_multipart() or id(part) in bodies:
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if filename is None and disposition is None:
            continue
        content_id = part["Content-ID"]
        found.append(
            Attachment(
                filename=filename,
                content_type=part.get_content_type(),
                data=_payload(part),
                disposition=disposition,
                content_id=str(content_id).strip() if content_id else None,
            )
        )
    return found


def _describe(part: Message) -> str:
    facts = []
    if part.get_filename():
        facts.append(f"name={part.get_filename()!r}")
    if part.get_content_charset():
        facts.append(f"charset={part.get_content_charset()}")
    if part["Content-Transfer-Encoding"]:
        facts.append(f"encoding={str(part['Content-Transfer-Encoding']).strip().lower()}")
    if part.get_content_disposition():
        facts.append(str(part.get_content_disposition()))
    if part["Content-ID"]:  # what an HTML body names as src="cid:…" (RFC 2392)
        facts.append(f"cid={str(part['Content-ID']).strip()}")
    if not part.is_multipart():
        facts.append(f"{len(_payload(part)):,} bytes")
    return part.get_content_type() + (f"  ({', '.join(facts)})" if facts else "")


def mime_tree(message: Message) -> str:
    """The MIME structure of ``message``, one line per part, drawn as a tree.

    Each line gives the content type and what matters about the part: file name, charset,
    transfer encoding, disposition, the Content-ID an HTML body refers to, and decoded size.
    """

    def walk(part: Message, prefix: str, last: bool, root: bool) -> list[str]:
        branch = "" if root else ("└─ " if last else "├─ ")
        lines = [prefix + branch + _describe(part)]
        children = part.get_payload() if part.is_multipart() else []
        children = (
            [child for child in children if isinstance(child, Message)] if isinstance(children, list) else []
        )
        inner = prefix + ("" if root else ("   " if last else "│  "))
        for n, child in enumerate(children):
            lines += walk(child, inner, n == len(children) - 1, False)
        return lines

    return "\n".join(walk(message, "", True, True))
