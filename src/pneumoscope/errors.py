"""Project exceptions: errors a user can cause, printed by the CLI as one line.

The server maps them to HTTP statuses by type (never by matching message text):
:class:`UnsupportedFormatError` is 415, :class:`TooLargeError` 413, any other
:class:`PneumoscopeError` 422.
"""

from __future__ import annotations

import re


class PneumoscopeError(Exception):
    """An error caused by input or configuration; its message says what to do."""


class UnsupportedFormatError(PneumoscopeError):
    """A file that is not DICOM, PNG or JPEG (judged by its bytes)."""


class TooLargeError(PneumoscopeError):
    """An input over a size limit (bytes or pixels)."""


class BadItemError(PneumoscopeError):
    """One dataset item (image, mask, CSV row) is unusable.

    Carries the item id and path so that ``--skip-bad`` can list what it skipped.
    """

    def __init__(self, item_id: str, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.item_id = item_id
        self.path = path
        self.reason = reason

    def __reduce__(self):  # picklable, so worker processes can report it
        return (BadItemError, (self.item_id, self.path, self.reason))


def without_name(text: str, name: str) -> str:
    """A message without the ``name: `` it starts with (for a caller that shows the name itself)."""
    return text[len(name) + 2:] if name and text.startswith(f"{name}: ") else text


def one_line(exc: BaseException) -> str:
    """An exception's message in words on one line: pydicom's run over several lines, and
    Pillow's name the in-memory file object (``<_io.BytesIO object at 0x...>``), which says nothing."""
    text = re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "the data", str(exc))
    return " ".join(text.split()) or exc.__class__.__name__
