"""An error in a few words, for a line of a report, a table cell or a result row."""

from __future__ import annotations


def error_words(exc: BaseException, width: int = 120) -> str:
    """``exc``'s type and the first line of its message, at most ``width`` characters of it
    (``RuntimeError: out of memory``; the type alone for an empty message)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:width]}" if lines else type(exc).__name__
