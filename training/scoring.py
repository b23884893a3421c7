"""Decide whether an answer states the facts an eval record expects.

Evaluation scores fact accuracy by checking that every `expected` string
appears in the answer, so both sides are first normalised: "Rs. 1,50,000",
"INR 150000" and "₹1,50,000" must all count as the same amount.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# "Rs", "Rs." or "INR" written just before an amount means rupees.
_RUPEES = re.compile(r"\b(?:rs\.?|inr)\s*(?=\d)")
# A comma between digit groups, Indian (1,50,000) or western (150,000) style;
# "1,2,3" is a list, not a number, and keeps its commas.
_THOUSANDS = re.compile(r"(?<=\d),(?=(?:\d{2},)*\d{3}(?!\d))")
_PERCENT = re.compile(r"(?<=\d)\s*(?:%|per\s*cent\b)")
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"))
# Keep a decimal point (3.5) and a hyphen inside a token (SA-HR-12); any other
# punctuation, or an underscore, only separates words.
_PUNCTUATION = re.compile(r"(?<=\d)\.(?=\d)|(?<=[^\W_])-(?=[^\W_])|([^\w\s₹%]|_)")
_AFTER_RUPEE = re.compile(r"₹\s+(?=\d)")
_NUMBER_CHARS = frozenset("0123456789.")


def normalise(text: str) -> str:
    """Casefolded text with amounts, percentages and spacing written one way."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_DASHES)
    text = _RUPEES.sub("₹", text)
    text = _THOUSANDS.sub("", text)
    text = _PERCENT.sub("%", text)
    text = _PUNCTUATION.sub(lambda m: " " if m.group(1) else m.group(0), text)
    text = _AFTER_RUPEE.sub("₹", text)
    return " ".join(text.split())


def _found(needle: str, haystack: str) -> bool:
    """Substring match, except that a number must not be part of a longer one:
    "₹500" is not in "₹5000", "12 days" not in "112 days", "5 days" not in "1.5 days".
    (After normalise() every "." left is a decimal point.)"""
    if not needle:
        return True
    start = haystack.find(needle)
    while start != -1:
        end = start + len(needle)
        cuts_number_before = needle[0].isdigit() and start > 0 and haystack[start - 1] in _NUMBER_CHARS
        cuts_number_after = needle[-1].isdigit() and end < len(haystack) and haystack[end] in _NUMBER_CHARS
        if not cuts_number_before and not cuts_number_after:
            return True
        start = haystack.find(needle, start + 1)
    return False


def missing(answer: str, expected: Sequence[str]) -> list[str]:
    """The expected strings (as given) that the answer does not contain."""
    answer_norm = normalise(answer)
    return [item for item in expected if not _found(normalise(item), answer_norm)]


def contains_all(answer: str, expected: Sequence[str]) -> bool:
    """True when the answer contains every expected string, after normalising both."""
    return not missing(answer, expected)
