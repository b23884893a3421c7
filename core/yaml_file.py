"""Reading a YAML mapping while remembering each key's line, for precise errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """The file is unreadable, not YAML, or not a mapping; the message says where."""


def read_yaml_mapping(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The file's top-level mapping, and the 1-based line of each top-level key."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        values = yaml.safe_load(text)
    except OSError as error:
        raise YamlFileError(f"{path}: cannot read the file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise YamlFileError(f"{path}:{line}: not UTF-8 text (byte {error.object[error.start]:#x}); save it as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise YamlFileError(f"{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if values is None:
        return {}, {}
    if not isinstance(values, dict):
        raise YamlFileError(f"{path}:1: expected a mapping of key: value")
    return values, {key.value: key.start_mark.line + 1 for key, _ in node.value}
