"""Text from outside made safe to process: no lone UTF-16 surrogates.

JSON may carry `"\\ud800"`, which Python decodes to a str that no tokenizer and
no UTF-8 encoder accepts; such a character becomes U+FFFD at the edge instead.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (valid text is returned as is)."""
    return _SURROGATE.sub("\ufffd", text)


def well_formed_json(value: Any) -> Any:
    """A parsed JSON document with every string (keys included) made `well_formed`."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, dict):
        return {well_formed(k) if isinstance(k, str) else k: well_formed_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [well_formed_json(item) for item in value]
    return value
