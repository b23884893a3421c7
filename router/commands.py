"""Explicit routing by command: `/<department>` (`/hr`, `/it` ...), `/base`, `/auto`.

A department command pins the conversation to that department until `/auto`.
The pin is carried on assistant turns (`Turn.pinned`), so it lives exactly as
long as the conversation's memory does and `/reset` clears it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.messages import Route, Turn
from router.base import Router

AUTO = "auto"
# `/hr@SwitchboardBot` is how Telegram addresses a command to one bot in a group.
_COMMAND = re.compile(r"^/(?P<name>[A-Za-z][A-Za-z0-9_]*)(?:@\w+)?(?:\s+|$)(?P<rest>.*)", re.DOTALL)


def parse_command(text: str) -> tuple[str | None, str]:
    """Split a leading `/command` off `text`: (name or None, remaining text)."""
    match = _COMMAND.match(text.strip())
    if not match:
        return None, text.strip()
    return match["name"].lower(), match["rest"].strip()


class CommandRouter:
    """Honours routing commands and pins; otherwise asks the automatic router."""

    def __init__(self, automatic: Router, targets: Sequence[str]) -> None:
        self._automatic = automatic
        self._targets = tuple(targets)  # the company's departments and base

    def route(self, text: str, history: Sequence[Turn]) -> Route:
        command, rest = parse_command(text)
        if command in self._targets:
            return Route(command, 1.0, "command", text=rest, pinned=True)
        if command == AUTO:
            # `/auto` starts routing afresh: no pin, and no conversation department to stick to.
            return _unpinned(self._automatic.route(rest, _without_departments(history)), rest)
        pinned = _current_pin(history)
        if pinned is not None:
            return Route(pinned, 1.0, "command", text=text.strip(), pinned=True)
        return _unpinned(self._automatic.route(text, history), text.strip())


class FallbackRouter:
    """Sends everything to the base model: the automatic router until one is trained."""

    def route(self, text: str, history: Sequence[Turn]) -> Route:
        return Route("base", 1.0, "fallback", text=text.strip())


def _current_pin(history: Sequence[Turn]) -> str | None:
    for turn in reversed(history):
        if turn.role == "assistant":
            return turn.department if turn.pinned else None
    return None


def _without_departments(history: Sequence[Turn]) -> list[Turn]:
    return [Turn(t.role, t.content) for t in history]


def _unpinned(route: Route, text: str) -> Route:
    return Route(route.department, route.confidence, route.reason, text=text, pinned=False)
