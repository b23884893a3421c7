"""Cheap change detection for files a running server watches (registry, router, handbooks)."""

from __future__ import annotations

from pathlib import Path


def file_signature(path: Path) -> tuple[int, int] | None:
    """Modification time and size; None while the file does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size
