"""What flows through the pipeline: conversation turns, inbound messages, routes, handbook entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Turn:
    """One message of a conversation.

    Assistant turns remember which department answered and whether the user had
    pinned that department with a command, so routing state travels with the
    history instead of needing a store of its own.
    """

    role: Role
    content: str
    department: str | None = None
    pinned: bool = False


@dataclass(frozen=True)
class IncomingMessage:
    """A message from any channel, normalised."""

    channel: str
    conversation_id: str
    text: str
    user_id: str = ""
    message_id: str = ""


@dataclass(frozen=True)
class Route:
    """Where a message goes and why.

    `text` is the message with any routing command removed: what the model
    should answer. `pinned` means an explicit command chose the department and
    it sticks for the conversation until `/auto`.
    """

    department: str
    confidence: float
    reason: str
    text: str = ""
    pinned: bool = False


@dataclass(frozen=True)
class Entry:
    """A handbook fact retrieved for a question; `score` is its similarity (0 to 1)."""

    id: str
    text: str
    score: float = 0.0
    section: str = ""


@dataclass(frozen=True)
class Grounding:
    """The handbook entries a question is answered from, and the reply for when none answers it."""

    entries: tuple[Entry, ...]
    not_covered: str


@dataclass(frozen=True)
class Reply:
    """The pipeline's answer to one message; `sources` are the handbook entries it used."""

    text: str
    route: Route
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    latency_ms: float = 0.0
    sources: tuple[Entry, ...] = ()
