"""Splitting a long reply into messages a platform accepts.

Splits at paragraph breaks, then sentence ends, then spaces, and only as a
last resort inside a word; never inside a character (a surrogate pair counts
as one character here, and as two UTF-16 units for Telegram's limit).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SENTENCE_END = re.compile(r"(?<=[.!?।])\s+")


def utf16_length(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, length: Callable[[str], int] = len) -> list[str]:
    """Pieces of `text`, each at most `limit` by `length`, together holding all its words."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    text = text.strip()
    if not text:
        return []
    pieces: list[str] = []
    _pack(text.split("\n\n"), "\n\n", limit, length, pieces)
    return pieces


def _pack(parts: list[str], separator: str, limit: int, length: Callable[[str], int], out: list[str]) -> None:
    current = ""
    for part in (p.strip() for p in parts):
        if not part:
            continue
        candidate = f"{current}{separator}{part}" if current else part
        if length(candidate) <= limit:
            current = candidate
            continue
        if current:
            out.append(current)
            current = ""
        if length(part) <= limit:
            current = part
        else:
            out.extend(_split_long(part, limit, length))
    if current:
        out.append(current)


def _split_long(part: str, limit: int, length: Callable[[str], int]) -> list[str]:
    sentences = _SENTENCE_END.split(part)
    if len(sentences) > 1:
        pieces: list[str] = []
        _pack(sentences, " ", limit, length, pieces)
        return pieces
    words = part.split()
    if len(words) > 1:
        pieces = []
        _pack(words, " ", limit, length, pieces)
        return pieces
    return _split_word(part, limit, length)


def _split_word(word: str, limit: int, length: Callable[[str], int]) -> list[str]:
    pieces, current = [], ""
    for char in word:  # Python iterates whole code points, so no surrogate is ever cut
        if current and length(current + char) > limit:
            pieces.append(current)
            current = ""
        current += char
    if current:
        pieces.append(current)
    return pieces
